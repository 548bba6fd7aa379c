/**
 * The server's PKI material on disk (`<data-dir>/pki/`): the CA and the
 * server certificate. Created on first start; the server certificate is
 * re-issued when the configured hosts change or it nears expiry. Private
 * keys are written with mode 0600.
 *
 * CA rotation (see docs/operations.md): `rotateCa` makes a new CA and a
 * server certificate from it beside the current ones (`ca-next.*`,
 * `server-next.*`, `rotation.json` with the cutover time). Until the
 * cutover the agent port keeps presenting the current certificate (every
 * agent trusts it) while agents learn the new CA over their authenticated
 * channel and renew their client certificates from it. At the cutover the
 * next pair becomes current and the old CA certificate is kept as
 * `ca-previous.crt`, trusted for client certificates only (its key is
 * deleted), so agents that missed the overlap can still authenticate after
 * `rollcall-agent repin`.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { RollcallError } from '../common/errors.js';
import { httpError } from './errors.js';
import { certInfo, createCa, issueServerCert, spkiPin, type KeyedCert } from '../common/pki.js';

/** The server's loaded PKI. */
export interface ServerPki {
  /** The CA the agent port presents and enrolls with. */
  readonly ca: KeyedCert;
  readonly server: KeyedCert;
  /** `sha256:<hex>` of the CA's SubjectPublicKeyInfo. */
  readonly caPin: string;
  /** During a rotation: the new CA, its server certificate, its pin and the cutover time (Unix ms). */
  readonly next: { readonly ca: KeyedCert; readonly server: KeyedCert; readonly caPin: string; readonly cutoverAt: number } | null;
  /** The CA certificate before the last cutover: still trusted for agents' client certificates. */
  readonly previousCaPem: string | null;
  /** True when this call created the CA. */
  readonly createdCa: boolean;
  /** True when this call issued a new server certificate. */
  readonly issuedServerCert: boolean;
}

const RENEW_BEFORE_MS = 30 * 86_400_000;

function pkiFiles(dir: string) {
  const f = (name: string): string => path.join(dir, name);
  return {
    caCert: f('ca.crt'),
    caKey: f('ca.key'),
    cert: f('server.crt'),
    key: f('server.key'),
    nextCaCert: f('ca-next.crt'),
    nextCaKey: f('ca-next.key'),
    nextCert: f('server-next.crt'),
    nextKey: f('server-next.key'),
    rotation: f('rotation.json'),
    previousCa: f('ca-previous.crt'),
  };
}

/** Every CA an agent should trust, newest first (the `trust` message), or null when there is just one. */
export function trustedCaPems(pki: ServerPki): string[] | null {
  const list = [pki.next?.ca.certPem, pki.ca.certPem, pki.previousCaPem].filter((p): p is string => !!p);
  return list.length > 1 ? list : null;
}

/** The CA that issues agent certificates at renewal: the newest. */
export function issuingCa(pki: ServerPki): KeyedCert {
  return pki.next?.ca ?? pki.ca;
}

/**
 * Starts a CA rotation: a new CA and a server certificate from it, kept
 * beside the current ones for `overlapMs`. Refused while one is running.
 */
export async function rotateCa(dir: string, hosts: readonly string[], overlapMs: number, clock: () => number = Date.now): Promise<void> {
  const now = new Date(clock());
  const files = pkiFiles(dir);
  if (await readIfExists(files.rotation)) throw httpError('CA_ROTATION_RUNNING', 'a CA rotation is already running; wait for its cutover');
  const ca = createCa({ commonName: `Rollcall CA ${now.toISOString().slice(0, 10)}`, now });
  const server = issueServerCert(ca, { hosts, now });
  await writePrivate(files.nextCaKey, ca.keyPem);
  await fs.writeFile(files.nextCaCert, ca.certPem, { mode: 0o644 });
  await writePrivate(files.nextKey, server.keyPem);
  await fs.writeFile(files.nextCert, server.certPem, { mode: 0o644 });
  // The overlap counts from when the new CA exists (making one takes a moment).
  await writePrivate(files.rotation, JSON.stringify({ startedAt: now.getTime(), cutoverAt: clock() + overlapMs }));
}

/** Ends a rotation: the next CA and server certificate become current; the old CA certificate is kept for client trust. */
async function cutover(dir: string): Promise<void> {
  const files = pkiFiles(dir);
  await fs.copyFile(files.caCert, files.previousCa);
  await fs.rename(files.nextCaKey, files.caKey);
  await fs.rename(files.nextCaCert, files.caCert);
  await fs.rename(files.nextKey, files.key);
  await fs.rename(files.nextCert, files.cert);
  await fs.rm(files.rotation);
}

async function loadNext(dir: string, now: Date): Promise<ServerPki['next']> {
  const files = pkiFiles(dir);
  const text = await readIfExists(files.rotation);
  if (!text) return null;
  const { cutoverAt } = JSON.parse(text) as { cutoverAt: number };
  if (now.getTime() >= cutoverAt) {
    await cutover(dir);
    return null;
  }
  const [caCert, caKey, cert, key] = await Promise.all([files.nextCaCert, files.nextCaKey, files.nextCert, files.nextKey].map(readIfExists));
  if (!caCert || !caKey || !cert || !key) throw new RollcallError('CA_ROTATION_BROKEN', `${files.rotation} exists but the next CA files are incomplete`);
  return { ca: { certPem: caCert, keyPem: caKey }, server: { certPem: cert, keyPem: key }, caPin: spkiPin(caCert), cutoverAt };
}

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
  const files = pkiFiles(dir);
  const next = await loadNext(dir, now);
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
  const previousCaPem = (await readIfExists(files.previousCa)) ?? null;
  return { ca, server: { certPem: cert!, keyPem: key! }, caPin: spkiPin(caCert), next, previousCaPem, createdCa, issuedServerCert };
}
