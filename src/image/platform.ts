/** An OCI platform (os/architecture[/variant]). */
export interface Platform {
  os: string
  architecture: string
  variant?: string
  'os.version'?: string
}

const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  i386: '386',
  i686: '386',
  aarch64: 'arm64',
  armhf: 'arm',
  armel: 'arm',
}

/** Normalise like containerd's platforms.Normalize: aliases, arm64/v8 → arm64, arm → arm/v7. */
export function normalizePlatform(p: Platform): Platform {
  const os = (p.os || 'linux').toLowerCase()
  const rawArch = p.architecture.toLowerCase()
  let architecture = ARCH_ALIASES[rawArch] ?? rawArch
  let variant = p.variant?.toLowerCase() || undefined
  if (rawArch === 'armhf') variant = 'v7'
  if (rawArch === 'armel') variant = 'v6'
  if (architecture === 'arm64' && (variant === '8' || variant === 'v8')) variant = undefined
  if (architecture === 'arm') {
    if (!variant || variant === '7') variant = 'v7'
    else if (/^\d$/.test(variant)) variant = `v${variant}`
  }
  if (architecture === 'amd64' && variant === 'v1') variant = undefined
  const out: Platform = {os, architecture}
  if (variant) out.variant = variant
  if (p['os.version']) out['os.version'] = p['os.version']
  return out
}

/** Parse `linux/amd64`, `linux/arm/v7`, `arm64` (os defaults to linux). */
export function parsePlatform(spec: string): Platform {
  const parts = spec.trim().split('/')
  if (parts.some((part) => part === '') || parts.length > 3) {
    throw new Error(`invalid platform "${spec}" (expected os/arch[/variant], e.g. linux/amd64)`)
  }
  if (parts.length === 1) return normalizePlatform({os: 'linux', architecture: parts[0]})
  return normalizePlatform({os: parts[0], architecture: parts[1], variant: parts[2]})
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/')
}

/** The platform of this machine (what a node running the same OS/CPU would want). */
export function hostPlatform(): Platform {
  return normalizePlatform({os: process.platform === 'win32' ? 'windows' : 'linux', architecture: process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch})
}

/** Variants an arm CPU can run, best first (containerd's platform matcher order). */
function compatibleVariants(want: Platform): (string | undefined)[] {
  if (want.architecture === 'arm') {
    const n = Number((want.variant ?? 'v7').slice(1))
    const out: (string | undefined)[] = []
    for (let v = n; v >= 5; v--) out.push(`v${v}`)
    return out
  }
  if (want.architecture === 'amd64') {
    const n = want.variant ? Number(want.variant.slice(1)) : 1
    const out: (string | undefined)[] = []
    for (let v = n; v >= 2; v--) out.push(`v${v}`)
    out.push(undefined)
    return out
  }
  if (want.architecture === 'arm64') return [undefined]
  return [want.variant]
}

/**
 * How well `have` serves a node that wants `want`: 0 = best, higher = worse,
 * -1 = cannot run it. An image entry without a platform is treated as runnable anywhere
 * only when it is the single choice (handled by the caller).
 */
export function platformRank(want: Platform, have: Platform): number {
  const w = normalizePlatform(want)
  const h = normalizePlatform(have)
  if (w.os !== h.os || w.architecture !== h.architecture) return -1
  const order = compatibleVariants(w)
  const rank = order.findIndex((v) => v === h.variant)
  return rank
}

export function platformMatches(want: Platform, have: Platform): boolean {
  return platformRank(want, have) >= 0
}
