import type {ExporterSpec, SolveRequest} from '../../buildkit/protos.js'
import type {BuildOptions} from './options.js'

/** The frontend attributes for the Dockerfile frontend (`dockerfile.v0`). */
export function frontendAttrs(opts: BuildOptions, dockerfileName: string): Record<string, string> {
  const attrs: Record<string, string> = {filename: dockerfileName}
  if (opts.pull) attrs['image-resolve-mode'] = opts.pull === 'always' ? 'pull' : 'local'
  if (opts.target) attrs.target = opts.target
  if (opts.platforms && opts.platforms.length > 0) attrs.platform = opts.platforms.join(',')
  if (opts.noCache) attrs['no-cache'] = ''
  if (opts.network && opts.network !== 'default') attrs['force-network-mode'] = opts.network
  for (const [k, v] of Object.entries(opts.buildArgs ?? {})) attrs[`build-arg:${k}`] = v
  for (const [k, v] of Object.entries(opts.labels ?? {})) attrs[`label:${k}`] = v
  return attrs
}

/**
 * The SolveRequest: the exporter goes both into `Exporters` (BuildKit ≥ v0.13) and into the
 * deprecated single-exporter fields (older daemons, dockerd 20.10), like buildctl does.
 */
export function solveRequest(
  ref: string,
  sessionId: string,
  attrs: Record<string, string>,
  exporter: ExporterSpec,
  entitlements: string[] = [],
): SolveRequest {
  return {
    Ref: ref,
    Session: sessionId,
    Frontend: 'dockerfile.v0',
    FrontendAttrs: attrs,
    ExporterDeprecated: exporter.Type,
    ExporterAttrsDeprecated: {...exporter.Attrs},
    Exporters: [exporter],
    Entitlements: entitlements,
  }
}
