import {type ConnectOptions, SshConnection} from './connection.js'
import {type ResolvedTarget, resolveTarget, targetKey} from './target.js'

export type PoolOptions = Omit<ConnectOptions, 'target'>

/**
 * Connections shared by resolved target (user@host:port plus jump chain), so every operation
 * on one node rides one SSH connection. Concurrent get() calls for the same node wait for the
 * same handshake; a connection that died is replaced on the next get(). Whatever is still
 * open when the process exits is torn down (local bridge sockets and their directories too).
 */
export class SshPool {
  private readonly pending = new Map<string, Promise<SshConnection>>()
  private readonly connected = new Set<SshConnection>()
  private readonly onExit = (): void => {
    for (const c of this.connected) c.destroy()
  }
  private exitHookInstalled = false

  constructor(private readonly options: PoolOptions = {}) {}

  /** Resolve a target with the pool's ssh_config options. */
  resolve(target: string | ResolvedTarget): ResolvedTarget {
    return typeof target === 'string' ? resolveTarget(target, this.options.resolve) : target
  }

  /** The open connection for this target, connecting if needed. */
  async get(target: string | ResolvedTarget): Promise<SshConnection> {
    const resolved = this.resolve(target)
    const key = targetKey(resolved)
    const existing = this.pending.get(key)
    if (existing) {
      const conn = await existing.catch(() => undefined)
      if (conn?.isOpen) return conn
      if (this.pending.get(key) === existing) this.pending.delete(key)
      if (conn === undefined) return existing // the shared attempt failed: report its error to every waiter
      return this.get(resolved)
    }
    const attempt = SshConnection.connect({...this.options, target: resolved})
    this.pending.set(key, attempt)
    this.installExitHook()
    try {
      const conn = await attempt
      this.connected.add(conn)
      void conn.closed.then(() => {
        this.connected.delete(conn)
        if (this.pending.get(key) === attempt) this.pending.delete(key)
      })
      return conn
    } catch (err) {
      if (this.pending.get(key) === attempt) this.pending.delete(key)
      throw err
    }
  }

  /** How many targets have a connection (open or being opened). */
  get size(): number {
    return this.pending.size
  }

  /** Close every connection (waits for each to finish). */
  async closeAll(): Promise<void> {
    const all = [...this.pending.values()]
    this.pending.clear()
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()))
    this.connected.clear()
    if (this.exitHookInstalled) {
      this.exitHookInstalled = false
      process.off('exit', this.onExit)
    }
  }

  private installExitHook(): void {
    if (this.exitHookInstalled) return
    this.exitHookInstalled = true
    process.once('exit', this.onExit)
  }
}
