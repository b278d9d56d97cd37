// A worker thread of a push (push-workers.ts): opens the image source as push() did, and pushes
// each (image, node) pair it is handed with the same code as push() itself (pushToNode), over
// SSH connections of its own. Progress goes to the push's thread, which shows it.
import {parentPort, workerData} from 'node:worker_threads'
import {openSources} from '../sources/index.js'
import {SshPool} from '../ssh/index.js'
import type {Reporter} from '../ui/progress.js'
import type {FromWorker, PushWorkerOptions, ToWorker} from './push-workers.js'
import {OpenedImage, pushContext, pushToNode} from './push.js'

const port = parentPort!
const options = workerData as PushWorkerOptions
const post = (m: FromWorker): void => port.postMessage(m)
const cancel = new AbortController()
const pool = new SshPool(options.ssh)
const running = new Set<Promise<void>>()

const ready = (async () => {
  const opened = await openSources(options.source, options.images)
  const images = new Map(opened.images.map((i) => [i.name, new OpenedImage(i.name, i.source)]))
  const reporter: Reporter = {event: (event) => post({type: 'event', event}), close: () => undefined}
  const ctx = pushContext({...options, nodes: [], reporter, signal: cancel.signal}, pool, images.size)
  return {opened, images, ctx}
})()
ready.catch((err: Error) => post({type: 'failed', message: err.message}))

port.on('message', (m: ToWorker) => {
  if (m.type === 'cancel') {
    cancel.abort()
  } else if (m.type === 'close') {
    void close()
  } else {
    const job = (async () => {
      try {
        const {images, ctx} = await ready
        const image = images.get(m.image)
        if (!image) throw new Error(`the source has no image ${m.image}`)
        post({type: 'result', id: m.id, result: await pushToNode(ctx, m.target, image, m.route)})
      } catch (err) {
        post({type: 'failed', id: m.id, message: (err as Error).message})
      }
    })()
    running.add(job)
    void job.finally(() => running.delete(job))
  }
})

async function close(): Promise<void> {
  await Promise.allSettled(running)
  const opened = await ready.then((r) => r.opened, () => undefined)
  await opened?.close()
  await pool.closeAll()
  port.close()
}
