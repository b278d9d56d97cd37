/** A lease as `ctr leases ls` lists it. */
export interface CtrLease {
  id: string
  labels: Record<string, string>
}

/** The one label of the lease ctr takes for its own operations (containerd's client.WithLease, 24 h). */
const CTR_LEASE_LABEL = 'containerd.io/gc.expire'

const isCtrKind = (l: CtrLease): boolean => Object.keys(l.labels).join() === CTR_LEASE_LABEL

/**
 * Which lease is the one a `ctr images import|pull` we just started took (as it starts, before it
 * reads or fetches anything). ctr deletes it when it ends, unless it cannot: stopped by a signal
 * (ctr does not trap them) or containerd down at that moment. Then it is ours to delete, and only
 * it: the CRI takes leases of the same kind for the kubelet's pulls, so a lease is taken for ctr's
 * only when it is the one new lease of that kind in the first listing after ctr started that shows
 * any; two new ones and none is. What is left to chance: a kubelet pull that takes its lease in the
 * same ~100 ms as ctr starts, while ctr's does not show yet, and is still running when our import
 * fails; its pull would then fail and the kubelet would pull again.
 *
 * Lists the node's leases every `intervalMs` until it has decided, for at most `giveUpMs`.
 */
export class CtrLeaseWatch {
  private stopped = false
  private wake = (): void => undefined
  private found: string | undefined
  private decided = false
  private readonly polling: Promise<void>

  constructor(
    private readonly list: () => Promise<CtrLease[]>,
    private readonly before: ReadonlySet<string>,
    {intervalMs = 100, giveUpMs = 10_000}: {intervalMs?: number; giveUpMs?: number} = {},
  ) {
    this.polling = this.poll(intervalMs, Date.now() + giveUpMs)
  }

  /** Stops watching (ctr ended well: nothing of it is ours to delete). */
  async stop(): Promise<void> {
    this.stopped = true
    this.wake()
    await this.polling
  }

  /** Stops watching; the lease found (looking once more if none was yet), or undefined when none or more than one is new. */
  async settle(): Promise<string | undefined> {
    await this.stop()
    if (!this.decided) await this.look().catch(() => undefined)
    return this.found
  }

  private async poll(intervalMs: number, deadline: number): Promise<void> {
    while (!this.stopped && !this.decided && Date.now() < deadline) {
      await this.look().catch(() => undefined) // containerd may be down for a moment: look again
      if (this.decided || this.stopped) break
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  private async look(): Promise<void> {
    const fresh = (await this.list()).filter((l) => !this.before.has(l.id) && isCtrKind(l))
    if (fresh.length === 0) return
    this.decided = true
    this.found = fresh.length === 1 ? fresh[0].id : undefined
  }
}
