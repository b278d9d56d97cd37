// A throwaway PKI for the test API server: a CA, a serving certificate for 127.0.0.1/localhost,
// and optionally client certificates (CN = user, O = group), all made with the openssl CLI.
import {execFileSync} from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

export interface TestPki {
  dir: string
  caCertPath: string
  caKeyPath: string
  serverCertPath: string
  serverKeyPath: string
}

export interface ClientCert {
  certPath: string
  keyPath: string
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, {cwd, stdio: ['ignore', 'ignore', 'pipe']})
}

/** Creates a CA and a serving certificate (SAN 127.0.0.1, ::1, localhost) under `dir`. */
export function createPki(dir: string): TestPki {
  fs.mkdirSync(dir, {recursive: true})
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir)
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-subj', '/CN=sideload-test-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', 'ca.crt'], dir)
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'server.key'], dir)
  openssl(['req', '-new', '-key', 'server.key', '-subj', '/CN=kube-apiserver', '-out', 'server.csr'], dir)
  fs.writeFileSync(path.join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes.default.svc\n' +
    'extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n')
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-sha256', '-extfile', 'server.ext', '-out', 'server.crt'], dir)
  return {
    dir,
    caCertPath: path.join(dir, 'ca.crt'),
    caKeyPath: path.join(dir, 'ca.key'),
    serverCertPath: path.join(dir, 'server.crt'),
    serverKeyPath: path.join(dir, 'server.key'),
  }
}

/** Issues a client certificate the server maps to user `user` in `groups` (like kube-apiserver: CN, O). */
export function createClientCert(pki: TestPki, user: string, groups: string[] = []): ClientCert {
  const base = `client-${user.replace(/[^a-zA-Z0-9_-]/g, '_')}`
  const subj = `/CN=${user}` + groups.map(g => `/O=${g}`).join('')
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}.key`], pki.dir)
  openssl(['req', '-new', '-key', `${base}.key`, '-subj', subj, '-out', `${base}.csr`], pki.dir)
  fs.writeFileSync(path.join(pki.dir, `${base}.ext`), 'extendedKeyUsage=clientAuth\n')
  openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-sha256', '-extfile', `${base}.ext`, '-out', `${base}.crt`], pki.dir)
  return {certPath: path.join(pki.dir, `${base}.crt`), keyPath: path.join(pki.dir, `${base}.key`)}
}
