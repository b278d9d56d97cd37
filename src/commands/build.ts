import {Args, Flags} from '@oclif/core'
import {BuildFailedError, describeFailure} from '../buildkit/errors.js'
import {type ProgressMode, createProgressRenderer} from '../buildkit/progress.js'
import {type BuildOptions, type BuildOutput, type BuildResult, build} from '../ops/build/index.js'
import {buildFlags, builderChoice, keyValues, parseSecrets} from '../cli/flags.js'
import {SideloadCommand, UsageError} from '../ui/command.js'
import {type ErrorInfo, errorInfo, renderError} from '../ui/errors.js'

export default class Build extends SideloadCommand {
  static override summary = 'Build an image from a Dockerfile with BuildKit (no buildctl, no docker CLI needed).'

  static override description = `Builds with a BuildKit daemon (--builder buildkit: $BUILDKIT_HOST or unix:///run/buildkit/buildkitd.sock)
or with the BuildKit inside dockerd (--builder docker: $DOCKER_HOST or unix:///var/run/docker.sock).
The default, --builder auto, takes the BuildKit daemon when BUILDKIT_HOST is set or its socket exists, else dockerd.

Where the image ends up:
- BuildKit daemon whose worker is containerd namespace k8s.io: straight into that containerd.
- Other BuildKit daemons: a docker-archive (OCI layout + manifest.json) in the temp directory, path printed.
- dockerd: in dockerd's image store under the -t names (read back with docker save).
- --output oci:FILE | docker:FILE | tar:FILE: that archive instead.

The context is uploaded through the BuildKit session, filtered by .dockerignore; an unchanged rebuild uploads nothing.`

  static override examples = [
    {description: 'Build the current directory with dockerd\'s BuildKit', command: '<%= config.bin %> build . -t myapp:dev --builder docker'},
    {description: 'Build a target stage with build arguments', command: '<%= config.bin %> build ./app -t api:1 --target runtime --build-arg VERSION=1.2 --build-arg DEBUG=0'},
    {description: 'Use a secret in RUN --mount=type=secret,id=npmrc', command: '<%= config.bin %> build . -t web:1 --secret id=npmrc,src=$HOME/.npmrc'},
    {description: 'Write a docker-archive instead of keeping the image in the daemon', command: '<%= config.bin %> build . -t web:1 --builder docker --output docker:web.tar'},
    {description: 'Plain step logs (what CI gets without a terminal)', command: '<%= config.bin %> build . -t web:1 --progress plain'},
  ]

  static override args = {
    context: Args.string({description: 'build context directory', default: '.', ignoreStdin: true}),
  }

  static override flags = {
    ...buildFlags,
    tag: Flags.string({char: 't', description: 'image name (repeatable)', multiple: true, multipleNonGreedy: true}),
    platform: Flags.string({description: 'target platform(s), e.g. linux/amd64 (repeatable or comma-separated)', multiple: true, multipleNonGreedy: true}),
    network: Flags.string({description: 'network for RUN steps', options: ['default', 'none', 'host'], default: 'default'}),
    label: Flags.string({description: 'image label K=V (repeatable)', multiple: true, multipleNonGreedy: true}),
    progress: Flags.string({description: 'progress output', options: ['auto', 'plain', 'tty', 'json'], default: 'auto'}),
    output: Flags.string({char: 'o', description: 'write an archive instead: oci:FILE, docker:FILE or tar:FILE'}),
  }

  protected override describe(err: unknown): ErrorInfo {
    return err instanceof BuildFailedError ? {message: describeFailure(err), reason: 'build-failed'} : errorInfo(err)
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Build)
    const progressMode = flags.progress as ProgressMode
    const renderer = createProgressRenderer(progressMode, progressMode === 'json' ? process.stdout : process.stderr)
    const options: BuildOptions = {
      context: args.context,
      dockerfile: flags.file,
      tags: flags.tag ?? [],
      buildArgs: keyValues(flags['build-arg'] ?? [], '--build-arg'),
      labels: keyValues(flags.label ?? [], '--label'),
      target: flags.target,
      platforms: (flags.platform ?? []).flatMap((p) => p.split(',')).filter((p) => p !== ''),
      noCache: flags['no-cache'],
      network: flags.network as BuildOptions['network'],
      secrets: parseSecrets(flags.secret ?? []),
      builder: builderChoice(flags.builder, flags['buildkit-host'], flags['docker-host']),
      output: flags.output ? parseOutput(flags.output) : undefined,
      pull: flags.pull as BuildOptions['pull'],
      containerdAddress: flags['containerd-address'],
      onStatus: (u) => renderer.update(u),
    }
    // Ctrl-C cancels the build in the daemon instead of leaving it running there.
    options.signal = this.signal
    let result: BuildResult
    try {
      result = await build(options)
    } finally {
      renderer.end()
    }
    if (progressMode === 'json') {
      this.log(JSON.stringify({event: 'build.done', location: result.location, digest: result.digest, durationMs: result.durationMs}))
    } else {
      this.log(describeLocation(result))
    }
    if (result.notStored) this.logToStderr(renderError({message: result.notStored, hint: 'point --containerd-address at the containerd that buildkitd uses (or run buildkitd on this machine\'s containerd, namespace k8s.io)'}, 'note'))
  }
}

/** `oci:FILE`, `docker:FILE`, `tar:FILE`, or buildctl's `type=oci,dest=FILE`. */
export function parseOutput(value: string): BuildOutput {
  let type: string | undefined
  let file: string | undefined
  if (value.includes('type=')) {
    for (const kv of value.split(',')) {
      const [k, v] = [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]
      if (k === 'type') type = v
      if (k === 'dest') file = v
    }
  } else {
    const colon = value.indexOf(':')
    type = colon > 0 ? value.slice(0, colon) : undefined
    file = colon > 0 ? value.slice(colon + 1) : undefined
  }
  if ((type !== 'oci' && type !== 'docker' && type !== 'tar') || !file) {
    throw new UsageError(`--output ${value}: expected oci:FILE, docker:FILE or tar:FILE`, 'e.g. --output oci:app.tar (or type=oci,dest=app.tar)')
  }
  return {type, path: file}
}

function describeLocation(result: BuildResult): string {
  const loc = result.location
  const names = loc.names.length > 0 ? loc.names.join(', ') : (result.digest ?? 'image')
  const time = `${(result.durationMs / 1000).toFixed(1)}s`
  switch (loc.kind) {
    case 'dockerd':
      return `Built ${names} (${loc.imageId}) in ${time}: in dockerd at ${loc.dockerHost}`
    case 'containerd':
      return `Built ${names} in ${time}: in containerd namespace ${loc.namespace} of the BuildKit host (${loc.buildkitAddress})`
    case 'archive':
      return `Built ${names} in ${time}: ${loc.format} archive ${loc.path}`
  }
}
