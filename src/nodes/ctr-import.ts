// One `sudo ctr images import` on a node (CtrNode): started under a shell that says its PID, fed
// the OCI tar, stopped and waited for; and what its failure says.
import {Transform} from 'node:stream'
import type {ImportEvent} from '../containerd/index.js'
import type {Digest} from '../image/index.js'
import {type SshConnection, SshError} from '../ssh/index.js'
import {CONTAINERD_GONE, ctrErrorLines} from './ctr-output.js'

/**
 * `ctr images import` under a shell that says its PID (first line of stdout), then becomes the
 * import (exec, sudo keeps that PID): should the connection be lost, a new one can tell when it
 * has ended. `input` counts the bytes into it (progress); `stop` ends the input and waits for ctr
 * (which then removes its own lease and ingests).
 */
export async function startCtrImport(conn: SshConnection, argv: string[], progress: {digest: Digest; size: number; onProgress?: (event: ImportEvent) => void}): Promise<RunningImport> {
  let sent = 0
  const input = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sent += chunk.length
      progress.onProgress?.({type: 'blob-bytes', digest: progress.digest, bytes: chunk.length, sent, size: progress.size})
      cb(null, chunk)
    },
  })
  const proc = await conn.exec(['sh', '-c', 'echo "$$"; exec "$@"', 'sideload-import', ...argv], {stdin: 'pipe'})
  const stderr: Buffer[] = []
  proc.stderr.on('data', (b: Buffer) => stderr.push(b))
  let stdout = ''
  proc.stdout.on('data', (b: Buffer) => {
    if (stdout.length < 64) stdout += b.toString()
  })
  input.pipe(proc.stdin)
  return {
    proc, input,
    sent: () => sent,
    stderrText: () => Buffer.concat(stderr).toString().trim(),
    remotePid: () => {
      const pid = Number(/^(\d+)\n/.exec(stdout)?.[1])
      return pid > 1 ? pid : undefined
    },
    stop: async () => {
      input.unpipe(proc.stdin)
      input.destroy()
      await proc.stop()
    },
  }
}

/** A `ctr images import` running on the node (startCtrImport). */
export interface RunningImport {
  proc: Awaited<ReturnType<SshConnection['exec']>>
  /** the tar goes in here */
  input: Transform
  sent(): number
  stderrText(): string
  remotePid(): number | undefined
  stop(): Promise<void>
}

/** ctr exited non-zero: what it said, and what to do (disk full, containerd gone, else try by hand). */
export function importFailed(text: string, exit: {code: number | null; signal?: string | null}): SshError {
  return new SshError('command', `ctr images import failed: ${ctrErrorLines(text).slice(-3).join('; ') || `exit ${exit.code ?? exit.signal}`}`, {
    hint: /no space left/i.test(text) ? 'free disk space on the node and retry'
      : CONTAINERD_GONE.test(text) ? 'the node\'s containerd stopped or restarted during the import: check it (systemctl status containerd) and push again; if it was down when ctr gave up, ctr\'s lease and partial blob stay there (24 h): `sideload doctor` shows them'
      : 'check `ctr --namespace k8s.io images import` on the node by hand',
  })
}
