import {randomBytes} from 'node:crypto'
import {decideRecord, DIGEST_LABEL, distributionSource, distributionSourceLabels, hasRecordLabels, imageRecordLabels, ImportCancelledError, originOf, type RecordDecision, type ImportResult, LEASE_IMAGE_LABEL, ctrActiveIngests, type LeftoverIngest, type LeftoverLease, leftoverLeases} from '../containerd/index.js'
import {type Descriptor, type Digest, formatPlatform, imageBlobs, imageRecordName, parseReference, writeOciArchive} from '../image/index.js'
import {type SshConnection, SshError, validateDigest, validateImageReference, validateRemotePath} from '../ssh/index.js'
import {sleep, within} from '../util/async.js'
import {importFailed, startCtrImport} from './ctr-import.js'
import {type CtrLease, CtrLeaseWatch} from './ctr-lease.js'
import {ctrContentTable, ctrErrorLines, ctrTable} from './ctr-output.js'
import {ctrMajor, noMirrorConfigured} from './detect.js'
import {inventory, type NodeImage, type NodeImageRecord} from './inventory.js'
import {mirrorsServe, registryMirrors, type Mirror} from './mirror.js'
import type {ImageNode, ImagesInUse, NodeFacts, NodeImportOptions, NodePullOptions, NodePullResult} from './node.js'

/**
 * A node whose containerd socket this SSH user cannot open (a non-root user): images go in
 * through `sudo -n ctr images import -` with an OCI tar that leaves out the blobs the node
 * already has (protocols.md §D). The tar is imported under a temporary name and only tagged
 * with the real name once import and unpack succeeded, so a failure never leaves a
 * half-imported image under the name the kubelet looks for.
 */
export class CtrNode implements ImageNode {
  private readonly ctr: string[]
  private mirrors?: Promise<Mirror[]>

  constructor(
    readonly name: string,
    readonly facts: NodeFacts,
    private readonly conn: SshConnection,
    asRoot: boolean,
  ) {
    const address = facts.socket ? ['--address', validateRemotePath(facts.socket)] : []
    this.ctr = [...(asRoot ? [] : ['sudo', '-n']), ...(facts.ctr ?? ['ctr']), ...address, '--namespace', 'k8s.io']
  }

  private async run(args: string[], what: string, conn = this.conn): Promise<string> {
    const out = await conn.execCapture([...this.ctr, ...args])
    if (out.code !== 0) {
      const detail = ctrErrorLines(out.stderr).slice(-3).join('; ') || `exit code ${out.code}`
      throw new SshError('command', `${what} failed: ${detail}`, {
        hint: /no space left/i.test(out.stderr) ? 'free disk space on the node (or let kubelet image GC run) and retry' : `run \`${this.ctr.join(' ')} ${args.join(' ')}\` on the node to see the full error`,
      })
    }
    return out.stdout
  }

  /** Digests of every blob in the node's content store. */
  private async presentBlobs(): Promise<Set<string>> {
    const out = await this.run(['content', 'ls', '--quiet'], 'listing the content store (ctr content ls)')
    return new Set(out.split('\n').map((l) => l.trim()).filter(Boolean))
  }

  /** Every image record (`ctr images ls`), or those the filter picks. */
  private async records(filter?: string, conn = this.conn): Promise<NodeImageRecord[]> {
    const out = await this.run(['images', 'ls', ...(filter ? [filter] : [])], 'listing images (ctr images ls)', conn)
    return ctrTable(out).map(({first, labels}) => ({name: first[0], target: {digest: first[2] as Digest, mediaType: first[1]}, labels}))
  }

  private async record(name: string): Promise<NodeImageRecord | undefined> {
    return (await this.records(`name==${name}`)).find((r) => r.name === name)
  }

  private async label(name: string, labels: Record<string, string>): Promise<void> {
    await this.run(['images', 'label', name, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)], 'labelling the image (ctr images label)')
  }

  /**
   * Every blob of the image carries its name's distribution-source label (labels.ts), as a pull
   * leaves it: node-to-node mirrors (Spegel) serve only labelled blobs. ctr import writes none.
   */
  private async labelSources(name: string, blobs: Descriptor[]): Promise<void> {
    const source = distributionSource(name)
    if (!source) return
    const out = await this.run(['content', 'ls', ...blobs.map((b) => `digest==${validateDigest(b.digest)}`)], 'listing the image\'s blobs (ctr content ls)')
    for (const {digest, labels} of ctrContentTable(out)) {
      const add = Object.entries(distributionSourceLabels(labels, source)).map(([k, v]) => `${k}=${v}`)
      if (add.length) await this.run(['content', 'label', validateDigest(digest), ...add], 'labelling a blob with its source (ctr content label)')
    }
  }

  /**
   * The CRI plugin names every image in k8s.io also by its ID (`sha256:<config>`). After a
   * failed import under our temporary name, that reference is all that is left of it: remove it
   * when no named image points at the same manifest (a named one keeps it, as the CRI would).
   */
  private async removeOrphanIdRefs(target: string, conn = this.conn): Promise<void> {
    const refs = (await this.records(undefined, conn)).filter((r) => r.target.digest === target).map((r) => r.name)
    if (refs.length === 0 || refs.some((r) => !/^sha256:[0-9a-f]{64}$/.test(r))) return
    await this.run(['images', 'rm', ...refs], 'removing the failed import (ctr images rm)', conn)
  }

  /**
   * After a failed import: the temporary name and the CRI's `sha256:<id>` name of it go. Waits up
   * to 5 s for containerd (restarting: its socket is gone for a moment, and ctr fails at once
   * then); a containerd that stays away is left as it is (doctor shows what is left).
   */
  private async removeFailedImport(conn: SshConnection, temporary: string, target: string): Promise<void> {
    const quick = [...this.ctr, '--connect-timeout', '5s']
    for (const deadline = Date.now() + 5000; ;) {
      const rm = await conn.execCapture([...quick, 'images', 'rm', temporary]).catch(() => undefined)
      const absent = rm?.code !== 0 && /connect|unavailable|no such file/i.test(rm?.stderr ?? '')
      if (!absent) break
      if (Date.now() >= deadline) return // containerd is not there
      await sleep(250)
    }
    await this.removeOrphanIdRefs(target, conn).catch(() => undefined)
  }

  /**
   * The connection the import ran on was lost. Its remote command ends by itself (its stdin got
   * EOF: ctr fails, drops its lease and ingests, exits); wait for that on a new connection, so
   * nothing of ours runs on the node when this push reports (and a retry does not race it). Still
   * running after `graceMs` (ctr stuck on a containerd that went away): TERM to sudo, which
   * passes it on to ctr. Then the failed import's names are removed there too.
   */
  private async endLostImport(pid: number, temporary: string, target: string, graceMs = 10_000): Promise<void> {
    let conn: SshConnection | undefined
    try {
      const again = this.conn.reconnect()
      conn = await within(again, 20_000)
      if (!conn) {
        void again.then((c) => c.close(), () => undefined)
        return
      }
      // $1 the PID, $2 how many tenths of a second to wait; exit 0 once it is gone
      const waitGone = 'i=0; while [ -d "/proc/$1" ]; do [ "$i" -ge "$2" ] && exit 1; i=$((i+1)); sleep 0.1; done'
      const gone = async (tenths: number): Promise<boolean> => (await conn!.execCapture(['sh', '-c', waitGone, 'sideload-wait', String(pid), String(tenths)])).code === 0
      if (!(await gone(Math.ceil(graceMs / 100)))) {
        // still our import (the PID was not reused)? then TERM it: the user may signal its sudo
        const term = 'tr "\\0" " " < "/proc/$1/cmdline" | grep -q "ctr .*images import" && kill -TERM "$1"'
        await conn.execCapture(['sh', '-c', term, 'sideload-stop', String(pid)])
        await gone(50)
      }
      await this.removeFailedImport(conn, temporary, target)
    } catch {
      // the node cannot be reached again: its import ends by itself once its input is gone
    } finally {
      await conn?.close().catch(() => undefined)
    }
  }

  /** Fails unless ctr reports the image complete and unpacked for the CRI snapshotter (checked, never assumed). */
  private async checkUnpacked(image: string): Promise<void> {
    const snapshotter = this.facts.snapshotter ? ['--snapshotter', this.facts.snapshotter] : []
    const out = await this.run(['images', 'check', ...snapshotter, `name==${image}`], 'checking the import (ctr images check)')
    const line = out.split('\n').find((l) => l.startsWith(`${image} `))
    const fields = line?.trim().split(/\s+/) ?? []
    if (fields.at(-1) !== 'true') {
      throw new SshError('command', `ctr imported the image but did not unpack it for snapshotter ${this.facts.snapshotter ?? '(default)'} (ctr images check: ${line?.trim() ?? 'no such image'})`, {
        hint: 'check the snapshotter with `containerd config dump` on the node and pass --snapshotter NAME, or push with --no-unpack',
      })
    }
  }

  async importImage(options: NodeImportOptions): Promise<ImportResult> {
    // the leases before ctr starts: its own is the one new lease after (CtrLeaseWatch), dropped if it fails
    const [plan, leasesBefore] = await Promise.all([this.planImport(options), this.leaseIds()])
    const {blobs, missing, base} = plan
    ;(options.onProgress ?? (() => undefined))({type: 'resolved', target: base.digest, manifest: base.manifest, platform: base.platform, blobs: blobs.length,
      totalBytes: plan.missingBytes + base.skippedBytes, missingBlobs: missing.length, missingBytes: plan.missingBytes})
    const upToDate = {...base, upToDate: true, sentBytes: 0, blobsSent: 0, blobsSkipped: blobs.length, unpacked: options.unpack}
    // another's record of this very image: nothing of it is touched (record-owner.ts)
    if (plan.decision === 'keep') return {...upToDate, kept: originOf(plan.record!)}
    if (await this.upToDate(plan)) return upToDate
    const temporary = `sideload.invalid/import/${base.digest.slice(7, 19)}:${randomBytes(6).toString('hex')}`
    const written = await this.importUnder(temporary, plan, options, leasesBefore)
    await this.conn.execCapture([...this.ctr, 'images', 'rm', temporary]).catch(() => undefined)
    await this.label(plan.name, plan.labels)
    await this.labelSources(plan.name, blobs)
    options.onProgress?.({type: 'image-record', name: plan.name, action: 'updated'})
    return {...base, upToDate: false, sentBytes: written.bytesWritten, blobsSent: written.blobsWritten, blobsSkipped: blobs.length - missing.length, unpacked: options.unpack}
  }

  /** What the node has of the image (`ctr content ls`) and under its name, and the record's labels; refuses another's record of other content. */
  private async planImport(options: NodeImportOptions): Promise<CtrImportPlan> {
    const name = validateImageReference(imageRecordName(options.name))
    const image = options.resolved
    const blobs = imageBlobs(image)
    const [present, record] = await Promise.all([this.presentBlobs(), this.record(name)])
    const decision = decideRecord(record, image.target.digest, options.replace ?? false)
    const missing = blobs.filter((b) => !present.has(b.digest))
    const skippedBytes = blobs.filter((b) => present.has(b.digest)).reduce((n, b) => n + b.size, 0)
    return {
      name, image, blobs, present, missing, missingBytes: missing.reduce((n, b) => n + b.size, 0), record, decision,
      labels: imageRecordLabels({digest: image.target.digest, pin: options.pin, provenance: options.provenance}),
      base: {name, digest: image.target.digest, manifest: image.manifest.digest, platform: formatPlatform(image.platform), skippedBytes},
    }
  }

  /** The node has every blob and our record points at this image: only labels it lacks are added. */
  private async upToDate(plan: CtrImportPlan): Promise<boolean> {
    const existing = plan.record
    if (plan.missing.length > 0 || existing?.target.digest !== plan.image.target.digest) return false
    if (!hasRecordLabels(existing.labels, plan.labels)) await this.label(plan.name, plan.labels)
    await this.labelSources(plan.name, plan.blobs)
    return true
  }

  /** `ctr images import` with what the node should do with the tar (platform, --local on 2.x, snapshotter, unpack). */
  private importArgs(plan: CtrImportPlan, unpack: boolean): string[] {
    const args = ['images', 'import', '--platform', plan.base.platform]
    // ctr 2.x imports through containerd's transfer service by default, which refuses to unpack
    // for a snapshotter its unpack config does not list; --local imports as 1.x always did.
    if ((ctrMajor(this.facts.ctrVersion) ?? 1) >= 2) args.push('--local')
    if (this.facts.snapshotter) args.push('--snapshotter', this.facts.snapshotter)
    if (!unpack) args.push('--no-unpack')
    args.push('-')
    return args
  }

  /**
   * The OCI tar of what the node lacks, streamed into `ctr images import` under `temporary`, checked
   * unpacked and tagged with the real name. On any failure (Ctrl-C too) ctr is stopped and waited
   * for, and the temporary names are removed — also over a new connection when this one was lost.
   */
  private async importUnder(temporary: string, plan: CtrImportPlan, options: NodeImportOptions, leasesBefore: ReadonlySet<string>): Promise<{blobsWritten: number; bytesWritten: number}> {
    const cancelled = (): ImportCancelledError => new ImportCancelledError(`node ${this.name}`)
    if (options.signal?.aborted) throw cancelled()
    const run = await startCtrImport(this.conn, [...this.ctr, ...this.importArgs(plan, options.unpack)], {digest: plan.image.target.digest, size: plan.missingBytes, onProgress: options.onProgress})
    const watch = new CtrLeaseWatch(() => this.leases(), leasesBefore)
    let onAbort = (): void => undefined
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(cancelled())
    })
    aborted.catch(() => undefined)
    options.signal?.addEventListener('abort', onAbort, {once: true})
    try {
      const writing = writeOciArchive(run.input, options.source, plan.image, {name: temporary, omitBlobs: new Set(plan.present)})
      writing.catch(() => undefined)
      // Either ends first: the archive fails (missing blob), or ctr exits, having read it all or
      // not (a layer it rejects, containerd gone: then the bytes it did not read go nowhere and
      // the writer would wait for them forever).
      const exit = await Promise.race([run.proc.wait(), writing.then(() => new Promise<never>(() => undefined)), aborted])
      if (options.signal?.aborted) throw cancelled()
      if (exit.code !== 0) throw importFailed(run.stderrText(), exit)
      // it read the whole archive: the writer is done, or its last padding is going nowhere
      const written = (await within(writing, 5000)) ?? {blobsWritten: plan.missing.length, bytesWritten: run.sent()}
      if (options.unpack) await this.checkUnpacked(temporary)
      // over a record only when the plan found one it may write (ours, or --replace); one that
      // appeared since is not overwritten: ctr refuses to tag over it without --force
      await this.run(['images', 'tag', ...(plan.record ? ['--force'] : []), temporary, plan.name], 'naming the image (ctr images tag)')
      await watch.stop()
      return written
    } catch (err) {
      await run.stop()
      const pid = run.remotePid()
      if (this.conn.isOpen) await this.removeFailedImport(this.conn, temporary, plan.image.target.digest)
      else if (pid) await this.endLostImport(pid, temporary, plan.image.target.digest)
      await this.dropCtrLease(watch)
      throw err
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * `ctr images pull --hosts-dir <the CRI's config_path>`: the node's own registry host config (its
   * mirrors, e.g. Spegel), as the CRI would pull, unpacked for the CRI's snapshotter; the record it
   * writes is the `repo@digest` name asked for.
   */
  readonly pullImage = async (options: NodePullOptions): Promise<NodePullResult> => {
    const present = await this.presentBlobs()
    if (options.blobs.every((b) => present.has(b.digest))) return {pulled: false}
    const hostsDir = this.facts.registryConfigPath
    if (!hostsDir) throw noMirrorConfigured()
    await options.ready?.()
    options.onPulling?.()
    const [leasesBefore, recordBefore] = await Promise.all([this.leaseIds(), this.record(validateImageReference(options.reference))])
    const args = ['images', 'pull', '--hosts-dir', validateRemotePath(hostsDir), '--platform', formatPlatform(this.facts.platform)]
    if ((ctrMajor(this.facts.ctrVersion) ?? 1) >= 2) args.push('--local') // as for import: unpack for the CRI's snapshotter
    if (this.facts.snapshotter) args.push('--snapshotter', this.facts.snapshotter)
    args.push(validateImageReference(options.reference))
    const proc = await this.conn.exec([...this.ctr, ...args])
    const watch = new CtrLeaseWatch(() => this.leases(), leasesBefore)
    const stderr: Buffer[] = []
    proc.stderr.on('data', (b: Buffer) => stderr.push(b))
    proc.stdout.resume()
    // a pull reads no stdin: giving up signals it at once (TERM, sudo passes it on), no grace for EOF
    const stop = (): void => void proc.stop(0)
    options.signal?.addEventListener('abort', stop, {once: true})
    try {
      const exit = await within(proc.wait(), options.timeoutMs)
      if (options.signal?.aborted) {
        await this.dropCtrLease(watch)
        options.signal.throwIfAborted()
      }
      if (!exit) {
        await proc.stop(0)
        await this.dropCtrLease(watch)
        throw new SshError('timeout', `ctr images pull ${options.reference} did not finish within ${Math.round(options.timeoutMs / 1000)} s`)
      }
      if (exit.code !== 0) {
        const text = Buffer.concat(stderr).toString()
        throw new SshError('command', `ctr images pull failed: ${ctrErrorLines(text).slice(-2).join('; ') || `exit ${exit.code ?? exit.signal}`}`)
      }
      // the record the pull wrote is sideload's (the import that follows labels it whole); one that was there before is not
      const pulledRecord = recordBefore ? undefined : await this.record(options.reference)
      if (pulledRecord) await this.label(options.reference, {[DIGEST_LABEL]: pulledRecord.target.digest})
      return {pulled: true}
    } finally {
      options.signal?.removeEventListener('abort', stop)
      await watch.stop()
    }
  }

  readonly mirrorServes = async (reference: string): Promise<boolean | undefined> => {
    const configPath = this.facts.registryConfigPath
    if (!configPath) return undefined
    this.mirrors ??= registryMirrors(this.conn, configPath, parseReference(reference).domain)
    return mirrorsServe(this.conn, await this.mirrors, reference)
  }

  async listImages(): Promise<NodeImage[]> {
    const [records, present] = await Promise.all([this.records(), this.presentBlobs()])
    return inventory(records, {
      has: async (digest) => present.has(digest),
      read: async (digest) => Buffer.from(await this.run(['content', 'get', validateDigest(digest)], 'reading a manifest (ctr content get)'), 'utf8'),
    })
  }

  /** `ctr containers ls`: the CRI's containers and pod sandboxes (both are containerd containers in k8s.io), with the configured sandbox image. */
  async imagesInUse(): Promise<ImagesInUse> {
    const out = await this.run(['containers', 'ls'], 'listing containers (ctr containers ls)')
    const containers = ctrTable(out).map(({first}) => ({id: first[0], image: first[1] ?? ''})).filter((c) => c.image && c.image !== '-')
    return {sandboxImage: this.facts.sandboxImage, containers}
  }

  async removeImages(names: string[]): Promise<void> {
    if (names.length === 0) return
    await this.run(['images', 'rm', '--sync', ...names.map(validateImageReference)], 'removing images (ctr images rm)')
  }

  /** ctr's lease that a failed import or pull left (CtrLeaseWatch), with what it held. Best effort: the push reports its own outcome either way. */
  private async dropCtrLease(watch: CtrLeaseWatch): Promise<void> {
    const lease = await watch.settle()
    // gone already (ctr deleted it), or the node went away meanwhile: then it expires on its own
    if (lease) await this.removeLeases([lease]).catch(() => undefined)
  }

  private async leaseIds(): Promise<Set<string>> {
    return new Set((await this.leases()).map((l) => l.id))
  }

  private async leases(): Promise<CtrLease[]> {
    const out = await this.run(['leases', 'ls'], 'listing leases (ctr leases ls)')
    return ctrTable(out).map(({first, labels}) => ({id: first[0], labels}))
  }

  async leftoverLeases(): Promise<LeftoverLease[]> {
    const leases = (await this.leases()).filter((l) => l.labels[LEASE_IMAGE_LABEL])
    const recorded = new Set((await this.records()).map((r) => r.name))
    return leftoverLeases(leases, (image) => recorded.has(image))
  }

  async leftoverIngests(): Promise<LeftoverIngest[]> {
    return ctrActiveIngests(await this.run(['content', 'active'], 'listing partial blobs (ctr content active)'))
  }

  async removeLeases(ids: string[]): Promise<void> {
    if (ids.length === 0) return
    for (const id of ids) {
      if (!/^\w[\w.:-]*$/.test(id)) throw new SshError('invalid-argument', `not a lease id: ${JSON.stringify(id)}`)
    }
    await this.run(['leases', 'rm', '--sync', ...ids], 'removing leases (ctr leases rm)')
  }

  async close(): Promise<void> {}
}

/** One import into a ctr node: the image, what the node has and lacks, what the record gets. */
interface CtrImportPlan {
  name: string
  image: NodeImportOptions['resolved']
  blobs: Descriptor[]
  present: Set<string>
  missing: Descriptor[]
  missingBytes: number
  labels: Record<string, string>
  /** the node's record of this name, and what this push may do with it (record-owner.ts) */
  record: NodeImageRecord | undefined
  decision: RecordDecision
  base: Pick<ImportResult, 'name' | 'digest' | 'manifest' | 'platform' | 'skippedBytes'>
}
