// metav1.Status bodies exactly as kube-apiserver writes them (k8s.io/apimachinery/pkg/api/errors).
import type {JsonObject} from './patch.js'

export interface StatusCause {
  reason: string
  message: string
  field: string
}

export interface StatusBody extends JsonObject {
  kind: 'Status'
  apiVersion: 'v1'
  metadata: JsonObject
  status: 'Failure' | 'Success'
  message: string
  reason: string
  code: number
}

export class ApiError extends Error {
  constructor(readonly status: StatusBody) {
    super(status.message)
  }
  get code(): number {
    return this.status.code
  }
}

function body(code: number, reason: string, message: string, details?: JsonObject): StatusBody {
  const s: StatusBody = {kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code}
  if (details) s.details = details
  if (reason === '') delete (s as JsonObject).reason
  return s
}

/** `pods "x" not found` — `resource` is the plural (`pods`), as the real server names it. */
export function notFound(resource: string, name: string): ApiError {
  return new ApiError(body(404, 'NotFound', `${resource} "${name}" not found`, {name, kind: resource}))
}

export function alreadyExists(resource: string, name: string): ApiError {
  return new ApiError(body(409, 'AlreadyExists', `${resource} "${name}" already exists`, {name, kind: resource}))
}

export function conflict(resource: string, name: string): ApiError {
  return new ApiError(body(409, 'Conflict',
    `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    {name, kind: resource}))
}

export function expired(message: string): ApiError {
  return new ApiError(body(410, 'Expired', message))
}

export function badRequest(message: string): ApiError {
  return new ApiError(body(400, 'BadRequest', message))
}

export function methodNotAllowed(): ApiError {
  return new ApiError(body(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'))
}

export function unsupportedMediaType(contentType: string): ApiError {
  return new ApiError(body(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got "${contentType}")`))
}

export function unauthorized(): ApiError {
  return new ApiError(body(401, 'Unauthorized', 'Unauthorized'))
}

export function pathNotFound(): ApiError {
  return new ApiError(body(404, 'NotFound', 'the server could not find the requested resource'))
}

/** `pods "x" is forbidden: User "u" cannot patch resource "pods" in API group "" in the namespace "default"` */
export function forbidden(user: string, verb: string, resource: string, subresource: string, name: string, namespace: string, group = ''): ApiError {
  const res = subresource ? `${resource}/${subresource}` : resource
  const qualified = group ? `${res}.${group}` : res
  const what = name ? `${qualified} "${name}"` : qualified
  const scope = namespace ? ` in the namespace "${namespace}"` : ' at the cluster scope'
  const message = `${what} is forbidden: User "${user}" cannot ${verb} resource "${res}" in API group "${group}"${scope}`
  const details: JsonObject = {kind: resource}
  if (name) details.name = name
  return new ApiError(body(403, 'Forbidden', message, details))
}

/** A field error as field.Error.Error() prints it: `spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`. */
export interface FieldError {
  type: 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueNotSupported' | 'FieldValueForbidden' | 'FieldValueDuplicate'
  field: string
  detail: string
  value?: unknown
}

function shownValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v)
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return JSON.stringify(v)
}

function fieldErrorBody(e: FieldError): string {
  switch (e.type) {
    case 'FieldValueInvalid': return `Invalid value: ${shownValue(e.value)}${e.detail ? `: ${e.detail}` : ''}`
    case 'FieldValueRequired': return `Required value${e.detail ? `: ${e.detail}` : ''}`
    case 'FieldValueNotSupported': return `Unsupported value: ${shownValue(e.value)}${e.detail ? `: ${e.detail}` : ''}`
    case 'FieldValueForbidden': return `Forbidden${e.detail ? `: ${e.detail}` : ''}`
    case 'FieldValueDuplicate': return `Duplicate value: ${shownValue(e.value)}`
  }
}

export function invalid(kind: string, name: string, errors: FieldError[]): ApiError {
  const texts = errors.map(e => `${e.field}: ${fieldErrorBody(e)}`)
  const joined = texts.length === 1 ? texts[0] : `[${texts.join(', ')}]`
  return new ApiError(body(422, 'Invalid', `${kind} "${name}" is invalid: ${joined}`, {
    name, kind,
    causes: errors.map(e => ({reason: e.type, message: fieldErrorBody(e), field: e.field})),
  }))
}

export function successStatus(details: JsonObject): StatusBody {
  return {kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', message: '', reason: '', code: 200, details}
}
