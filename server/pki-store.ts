/**
 * The server's PKI material on disk (`<data-dir>/pki/`): the CA and the
 * server certificate. Created on first start; the server certificate is
 * re-issued when the configured hosts change or it nears expiry. Private
 * keys are written with mode 0600.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { certInfo, createCa, issueServerCert, spkiPin, type KeyedCert } from '../common/pki.js';

/** The server's loaded PKI. */
export interface ServerPki {
  readonly ca: KeyedCert;
  readonly server: KeyedCert;
  /** `sha256:<hex>` of the CA's SubjectPublicKeyInfo. */
  readonly caPin: string;
  /** True when this call created the CA. */
  readonly createdCa: boolean;
  /** True when this call issued a new server certificate. */
  readonly issuedServerCert: boolean;
}

const RENEW_BEFORE_MS = 30 * 86_400_000;

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function writePrivate(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await fs.writeFile(tmp, text, { mode: 0o600 });
  await fs.rename(tmp, file);
}

/** Loads the PKI from `dir`, creating or renewing what is missing or stale. */
export async function ensureServerPki(dir: string, hosts: readonly string[], now = new Date()): Promise<ServerPki> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const files = {
    caCert: path.join(dir, 'ca.crt'),
    caKey: path.join(dir, 'ca.key'),
    cert: path.join(dir, 'server.crt'),
    key: path.join(dir, 'server.key'),
  };
  let createdCa = false;
  let caCert = await readIfExists(files.caCert);
  let caKey = await readIfExists(files.caKey);
  if (!caCert || !caKey) {
    const ca = createCa({ commonName: 'Rollcall CA', now });
    await writePrivate(files.caKey, ca.keyPem);
    await fs.writeFile(files.caCert, ca.certPem, { mode: 0o644 });
    caCert = ca.certPem;
    caKey = ca.keyPem;
    createdCa = true;
  }
  const ca: KeyedCert = { certPem: caCert, keyPem: caKey };
  let cert = await readIfExists(files.cert);
  let key = await readIfExists(files.key);
  let issuedServerCert = false;
  const stale = (): boolean => {
    if (!cert || !key || createdCa) return true;
    const info = certInfo(cert);
    const covered = hosts.every((h) => info.subjectAltNames.includes(h));
    return !covered || info.notAfter.getTime() - now.getTime() < RENEW_BEFORE_MS;
  };
  if (stale()) {
    const issued = issueServerCert(ca, { hosts, now });
    await writePrivate(files.key, issued.keyPem);
    await fs.writeFile(files.cert, issued.certPem, { mode: 0o644 });
    cert = issued.certPem;
    key = issued.keyPem;
    issuedServerCert = true;
  }
  return { ca, server: { certPem: cert!, keyPem: key! }, caPin: spkiPin(caCert), createdCa, issuedServerCert };
}
