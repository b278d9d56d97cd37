// The containerd and CRI protos (proto/containerd/, with what they import) precompiled into one
// protobufjs JSON descriptor, dist/proto/containerd.json, which src/grpc/load.ts reads instead of
// parsing the .proto files: parsing them, and the file descriptors @grpc/proto-loader builds for
// reflection (which nothing here uses), took ~30–40 ms of every push's start-up; the JSON ~5 ms.
// Same field names (keepCase) as the loader's. Run by `npm run build`.
import * as fs from 'node:fs'
import * as path from 'node:path'
import protobuf from 'protobufjs'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const protoDir = path.join(root, 'proto')
const files = fs.readdirSync(path.join(protoDir, 'containerd'), {recursive: true})
  .filter((f) => f.endsWith('.proto')).map((f) => `containerd/${f}`).sort()
const parsed = new protobuf.Root()
// as @grpc/proto-loader resolves imports: proto/ first, then protobufjs' own google/protobuf/*.proto
parsed.resolvePath = (_origin, target) => (fs.existsSync(path.join(protoDir, target)) ? path.join(protoDir, target) : target)
parsed.loadSync(files, {keepCase: true})
parsed.resolveAll()
const out = path.join(root, 'dist', 'proto', 'containerd.json')
fs.mkdirSync(path.dirname(out), {recursive: true})
fs.writeFileSync(out, JSON.stringify({files, root: parsed.toJSON()}))
