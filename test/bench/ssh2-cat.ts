// Context baseline: the archive through the SSH library sideload uses (ssh2, same cipher), into
// `cat > /dev/null` on the node. Prints {"connectMs", "transferMs"} on stdout. Separates what the
// library costs from what the protocol on top of it (gRPC, containerd) costs.
// usage: tsx test/bench/ssh2-cat.ts HOST KEYFILE FILE
import * as fs from 'node:fs'
import {pipeline} from 'node:stream/promises'
import {Client} from 'ssh2'

const [host, keyFile, file] = process.argv.slice(2)
if (!host || !keyFile || !file) {
  process.stderr.write('usage: tsx test/bench/ssh2-cat.ts HOST KEYFILE FILE\n')
  process.exit(2)
}
const started = performance.now()
const client = new Client()
client.on('error', (err: Error) => {
  process.stderr.write(`ssh2 to ${host} failed: ${err.message}\n`)
  process.exit(1)
})
client.on('ready', () => {
  const connected = performance.now()
  client.exec('cat > /dev/null', (err, channel) => {
    if (err) {
      process.stderr.write(`exec on ${host} failed: ${err.message}\n`)
      process.exit(1)
    }
    channel.on('exit', (code: number | null) => {
      const done = performance.now()
      client.end()
      if (code !== 0) {
        process.stderr.write(`cat on ${host} exited ${code}\n`)
        process.exit(1)
      }
      process.stdout.write(`${JSON.stringify({connectMs: connected - started, transferMs: done - connected})}\n`)
    })
    channel.resume()
    pipeline(fs.createReadStream(file, {highWaterMark: 1 << 20}), channel).catch((e: Error) => {
      process.stderr.write(`sending ${file} to ${host} failed: ${e.message}\n`)
      process.exit(1)
    })
  })
})
client.connect({host, port: 22, username: 'root', privateKey: fs.readFileSync(keyFile), algorithms: {cipher: ['aes128-gcm@openssh.com']}, hostVerifier: () => true}) // the bench's own fresh bed; the host key does not matter here
