import {type BuilderChoice, resolveBuilder} from '../build/index.js'
import {BuildkitClient, describeBuilder} from '../../buildkit/client.js'
import {type AddCheck, message, withTimeout} from './check.js'

/** A local BuildKit or Docker daemon: only a warning when absent (needed for build only). */
export async function checkBuilder(choice: BuilderChoice, timeoutMs: number, add: AddCheck): Promise<void> {
  const hint = 'only needed for sideload build / build-and-push: start buildkitd or dockerd, or set BUILDKIT_HOST / DOCKER_HOST'
  let endpoint
  try {
    endpoint = resolveBuilder(choice)
  } catch (err) {
    add({check: 'builder', target: 'local', status: 'warn', detail: message(err), hint})
    return
  }
  let client: BuildkitClient | undefined
  try {
    client = await withTimeout(BuildkitClient.connect(endpoint), timeoutMs, describeBuilder(endpoint))
    const workers = await withTimeout(client.listWorkers(), timeoutMs, describeBuilder(endpoint))
    const platforms = [...new Set(workers.flatMap((w) => (w.platforms ?? []).map((p) => `${p.OS}/${p.Architecture}`)))]
    add({check: 'builder', target: 'local', status: 'ok', detail: `${describeBuilder(endpoint)}${platforms.length ? ` (${platforms.join(', ')})` : ''}`})
  } catch (err) {
    add({check: 'builder', target: 'local', status: 'warn', detail: message(err), hint})
  } finally {
    await client?.close().catch(() => undefined)
  }
}
