/**
 * The agent's state directory: its private key, certificate, the CA it
 * trusts, its identity, its last acknowledged sequence number and its
 * status. Every file is written atomically (temp file + rename) with mode
 * 0600; the directory itself is 0700.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { RollcallError } from '../common/errors.js';
import type { ListenerPort } from '../common/protocol.js';

/** What enrollment leaves behind. */
export interface Identity {
  readonly deviceId: string;
  /** `host:port` entries, tried in order. */
  readonly servers: readonly string[];
  readonly caPin: string;
  readonly group: { readonly id: string; readonly path: string };
  readonly enrolledAt: string;
  readonly checkinPath: string;
  /** The HTTP CONNECT proxy given at enrollment (`http://[user:password@]host:port`), used by `run` unless overridden. */
  readonly proxy?: string;
}

/** File names inside the state directory. */
export const STATE_FILES = {
  key: 'agent.key',
  cert: 'agent.crt',
  ca: 'ca.crt',
  identity: 'identity.json',
  seq: 'seq.json',
  status: 'status.json',
  /** Protocol-2 failed-attempt list; imported into the outbox once, then removed. */
  attempts: 'attempts.json',
  outbox: 'outbox.log',
  nextKey: 'agent.next.key',
  nextCert: 'agent.next.crt',
  inventory: 'inventory.json',
  ports: 'ports.json',
  lock: 'agent.pid',
} as const;

/** Writes a file atomically with mode 0600. */
export async function writePrivateFile(file: string, data: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await fs.open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, file);
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new RollcallError('STATE_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Access to one state directory. */
export class AgentState {
  constructor(readonly dir: string) {}

  /** Path of a state file. */
  file(name: keyof typeof STATE_FILES): string {
    return path.join(this.dir, STATE_FILES[name]);
  }

  /** Creates the directory (0700) if needed, and takes group and other access away from one that exists. */
  async ensureDir(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing directory's mode alone; the private key must not sit in a listable one.
    if (((await fs.stat(this.dir)).mode & 0o077) !== 0) await fs.chmod(this.dir, 0o700);
  }

  /** True when the directory holds a complete enrollment. */
  async isEnrolled(): Promise<boolean> {
    const parts = await Promise.all((['key', 'cert', 'ca', 'identity'] as const).map((n) => readText(this.file(n))));
    return parts.every((p) => p !== undefined);
  }

  /** Stores the result of an enrollment. */
  async saveEnrollment(e: { keyPem: string; certPem: string; caPem: string; identity: Identity }): Promise<void> {
    await this.ensureDir();
    await writePrivateFile(this.file('key'), e.keyPem);
    await writePrivateFile(this.file('cert'), e.certPem);
    await writePrivateFile(this.file('ca'), e.caPem);
    await writePrivateFile(this.file('identity'), JSON.stringify(e.identity, null, 2));
  }

  /** Loads the credentials for connecting; throws `NOT_ENROLLED` when incomplete. */
  async loadCredentials(): Promise<{ keyPem: string; certPem: string; caPem: string; identity: Identity }> {
    const [keyPem, certPem, caPem, identityText] = await Promise.all([
      readText(this.file('key')),
      readText(this.file('cert')),
      readText(this.file('ca')),
      readText(this.file('identity')),
    ]);
    if (keyPem && certPem && !keyMatchesCert(keyPem, certPem)) return this.finishPromotion();
    if (!keyPem || !certPem || !caPem || !identityText) {
      throw new RollcallError('NOT_ENROLLED', `this agent is not enrolled (no complete enrollment in ${this.dir}); run "rollcall-agent enroll" first`);
    }
    let identity: Identity;
    try {
      identity = JSON.parse(identityText) as Identity;
    } catch (err) {
      throw new RollcallError('STATE_UNREADABLE', `${this.file('identity')} is not valid JSON`, { cause: err });
    }
    return { keyPem, certPem, caPem, identity };
  }

  /**
   * Keeps a renewed key and certificate beside the current ones until the
   * new pair has connected once (key first: a pair without its certificate
   * is incomplete and ignored).
   */
  async saveRenewed(keyPem: string, certPem: string): Promise<void> {
    await writePrivateFile(this.file('nextKey'), keyPem);
    await writePrivateFile(this.file('nextCert'), certPem);
  }

  /** The renewed pair waiting to be tried, if complete and matching. */
  async loadRenewed(): Promise<{ keyPem: string; certPem: string } | undefined> {
    const [keyPem, certPem] = await Promise.all([readText(this.file('nextKey')), readText(this.file('nextCert'))]);
    if (!keyPem || !certPem || !keyMatchesCert(keyPem, certPem)) return undefined;
    return { keyPem, certPem };
  }

  /** The renewed pair worked: it becomes the current one (see loadCredentials for a crash in between). */
  async promoteRenewed(): Promise<void> {
    await fs.rename(this.file('nextKey'), this.file('key'));
    await fs.rename(this.file('nextCert'), this.file('cert'));
  }

  /** The renewed pair was refused: forget it. */
  async discardRenewed(): Promise<void> {
    await fs.rm(this.file('nextCert'), { force: true });
    await fs.rm(this.file('nextKey'), { force: true });
  }

  /** A promotion was cut between its two renames (the new key is in place, its certificate not yet): complete it. */
  private async finishPromotion(): Promise<{ keyPem: string; certPem: string; caPem: string; identity: Identity }> {
    const key = await readText(this.file('key'));
    const next = await readText(this.file('nextCert'));
    if (!key || !next || !keyMatchesCert(key, next)) {
      throw new RollcallError('STATE_UNREADABLE', `${this.file('key')} does not belong to ${this.file('cert')}; re-enroll with --force`);
    }
    await fs.rename(this.file('nextCert'), this.file('cert'));
    return this.loadCredentials();
  }

  /** Replaces the trusted CA certificates (a bundle in ca.crt; CA rotation). */
  async saveTrustedCas(pems: readonly string[]): Promise<void> {
    await writePrivateFile(this.file('ca'), pems.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join(''));
  }

  /** Replaces the identity (repin). */
  async saveIdentity(identity: Identity): Promise<void> {
    await writePrivateFile(this.file('identity'), JSON.stringify(identity, null, 2));
  }

  /** Last sequence number the server acknowledged (0 when none). */
  async loadAckedSeq(): Promise<number> {
    const text = await readText(this.file('seq'));
    if (!text) return 0;
    const n = Number((JSON.parse(text) as { ackedSeq?: unknown }).ackedSeq);
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  }

  /** Records the last acknowledged sequence number. */
  async saveAckedSeq(seq: number): Promise<void> {
    await writePrivateFile(this.file('seq'), JSON.stringify({ ackedSeq: seq }));
  }

  /** Remembers the listener ports the server advertised (for `diagnose`). */
  async saveListenerPorts(ports: readonly ListenerPort[]): Promise<void> {
    await writePrivateFile(this.file('ports'), JSON.stringify(ports));
  }

  /** The listener ports the server last advertised, or [] before the first protocol-2 welcome. */
  async loadListenerPorts(): Promise<ListenerPort[]> {
    const text = await readText(this.file('ports'));
    if (!text) return [];
    try {
      const parsed = JSON.parse(text) as ListenerPort[];
      return Array.isArray(parsed) ? parsed.filter((p) => Number.isInteger(p.port) && (p.role === 'agent' || p.role === 'console')) : [];
    } catch (err) {
      throw new RollcallError('STATE_UNREADABLE', `${this.file('ports')} is not valid JSON`, { cause: err });
    }
  }

  /** Reads the status file written by a running agent. */
  async readStatus<T>(): Promise<T | undefined> {
    const text = await readText(this.file('status'));
    return text ? (JSON.parse(text) as T) : undefined;
  }
}

/** True when the private key belongs to the certificate. */
export function keyMatchesCert(keyPem: string, certPem: string): boolean {
  try {
    const ours = crypto.createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
    const theirs = new crypto.X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
    return ours.equals(theirs);
  } catch {
    return false; // unreadable PEM: the caller reports the pair as unusable
  }
}

/** The certificates of a PEM bundle, each as its own PEM. */
export function splitPems(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)?.map((p) => (p.endsWith('\n') ? p : `${p}\n`)) ?? [];
}
