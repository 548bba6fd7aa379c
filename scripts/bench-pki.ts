/**
 * The benchmark's certificates: a CA, a server certificate for 127.0.0.1,
 * and one agent certificate per simulated agent, all made with our own PKI
 * code. Every agent certificate carries the same RSA public key (one key
 * pair shared by all bench agents): issuing is ~4 ms per certificate, but a
 * fresh 2048-bit key each would cost far more and measure nothing of ours.
 *
 * The set is cached as JSON under the cache directory, keyed by the agent
 * count, so repeated runs start at once.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { createCa, generateKeyPair, issueClientCert, issueServerCert, type KeyedCert } from '../common/pki.js';

/** One simulated agent's identity. */
export interface BenchAgentCert {
  readonly deviceId: string;
  readonly certPem: string;
  /** Normalised serial, as the devices table stores it. */
  readonly serial: string;
  /** Unix milliseconds. */
  readonly notAfter: number;
}

/** Everything both servers and the clients need. */
export interface BenchPki {
  readonly ca: KeyedCert;
  readonly server: KeyedCert;
  /** The one private key every agent certificate belongs to (PKCS#8 PEM). */
  readonly agentKeyPem: string;
  readonly agents: readonly BenchAgentCert[];
}

interface CacheFile extends BenchPki {
  readonly format: number;
}

const CACHE_FORMAT = 1;
/** Regenerate when any certificate would expire within this margin. */
const MIN_REMAINING_MS = 7 * 86_400_000;

/** The device id of the i-th bench agent (0-based). */
export function benchDeviceId(i: number): string {
  return `dev_bench_${String(i).padStart(6, '0')}`;
}

/** Creates a fresh set of bench certificates (no caching). */
export function createBenchPki(agentCount: number, onProgress?: (done: number) => void): BenchPki {
  const ca = createCa({ commonName: 'Rollcall Bench CA' }); // 3072 bits, as in production
  const server = issueServerCert(ca, { hosts: ['localhost', '127.0.0.1'] });
  const keys = generateKeyPair(2048);
  const agents: BenchAgentCert[] = [];
  for (let i = 0; i < agentCount; i += 1) {
    const deviceId = benchDeviceId(i);
    const issued = issueClientCert(ca, { publicKeyPem: keys.publicKeyPem, deviceId });
    agents.push({ deviceId, certPem: issued.certPem, serial: issued.serial, notAfter: issued.notAfter.getTime() });
    if (onProgress && (i + 1) % 500 === 0) onProgress(i + 1);
  }
  return { ca, server, agentKeyPem: keys.privateKeyPem, agents };
}

function usable(cached: CacheFile, agentCount: number, now: number): boolean {
  return (
    cached.format === CACHE_FORMAT &&
    cached.agents.length === agentCount &&
    cached.agents.every((a) => a.notAfter - now > MIN_REMAINING_MS) &&
    typeof cached.agentKeyPem === 'string' &&
    typeof cached.server?.certPem === 'string'
  );
}

/** The cache file for a given agent count. */
export function benchPkiCacheFile(cacheDir: string, agentCount: number): string {
  return path.join(cacheDir, `pki-${agentCount}.json`);
}

/**
 * Loads the bench certificates for `agentCount` agents from `cacheDir`, or
 * makes and caches them. `onProgress` hears about generation only.
 */
export async function loadOrCreateBenchPki(
  cacheDir: string,
  agentCount: number,
  onProgress?: (message: string) => void,
): Promise<{ pki: BenchPki; cached: boolean }> {
  const file = benchPkiCacheFile(cacheDir, agentCount);
  try {
    const cached = JSON.parse(await fs.readFile(file, 'utf8')) as CacheFile;
    if (usable(cached, agentCount, Date.now())) return { pki: cached, cached: true };
    onProgress?.(`cached certificates in ${file} are stale; making new ones`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
  }
  onProgress?.(`issuing ${agentCount} agent certificates (one shared key pair; cached in ${file})`);
  const pki = createBenchPki(agentCount, (done) => onProgress?.(`  issued ${done}/${agentCount}`));
  await fs.mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const body: CacheFile = { format: CACHE_FORMAT, ...pki };
  await fs.writeFile(`${file}.tmp`, JSON.stringify(body), { mode: 0o600 });
  await fs.rename(`${file}.tmp`, file);
  return { pki, cached: false };
}
