/**
 * TLS session-ticket keys for the agent port, kept in the data directory so
 * that agents reconnecting after a server restart resume their TLS session
 * (about half the server CPU of a full mutual-TLS handshake) instead of all
 * making full handshakes at once.
 *
 * File: `<dataDir>/pki/ticket.keys`, mode 0600, JSON
 * `{ "createdAt": <unix ms>, "keys": "<96 hex digits>" }` (Node's 48-byte
 * ticketKeys: name, HMAC secret, AES key). Every process serving the agent
 * port reads the same file, so a ticket issued by one is accepted by all.
 *
 * Rotation: Node holds one key at a time, so a new key makes every ticket
 * outstanding at that moment unusable (those agents make one full handshake
 * on their next reconnect). A key is therefore rotated while the server
 * runs (agents are connected and need no ticket then), once it is older
 * than {@link TICKET_KEY_MAX_AGE_MS}, never at start-up, where it would turn
 * the reconnect storm after a restart into full handshakes. A missing or
 * unreadable file gets a fresh key (logged). Tickets live
 * {@link TICKET_LIFETIME_SEC} (the TLS 1.3 maximum): an agent whose channel
 * stayed up longer than that makes a full handshake when it reconnects.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

/** Ticket and session lifetime offered to agents: 7 days, the most TLS 1.3 allows. */
export const TICKET_LIFETIME_SEC = 7 * 86_400;
/** Age after which a running server replaces its ticket key. */
export const TICKET_KEY_MAX_AGE_MS = 30 * 86_400_000;
/** Length of Node's ticketKeys. */
const KEY_BYTES = 48;

/** A ticket key and when it was made. */
export interface TicketKey {
  readonly createdAt: number;
  readonly keys: Buffer;
}

/** Where the ticket key of a data directory lives. */
export function ticketKeyFile(dataDir: string): string {
  return path.join(dataDir, 'pki', 'ticket.keys');
}

function parse(text: string): TicketKey | undefined {
  const body = JSON.parse(text) as { createdAt?: unknown; keys?: unknown };
  if (typeof body.createdAt !== 'number' || !Number.isFinite(body.createdAt)) return undefined;
  if (typeof body.keys !== 'string' || !/^[0-9a-f]+$/.test(body.keys) || body.keys.length !== KEY_BYTES * 2) return undefined;
  return { createdAt: body.createdAt, keys: Buffer.from(body.keys, 'hex') };
}

async function write(file: string, key: TicketKey): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify({ createdAt: key.createdAt, keys: key.keys.toString('hex') }), { mode: 0o600 });
  await fs.rename(tmp, file);
}

/** What {@link loadOrCreateTicketKey} found. */
export interface LoadedTicketKey {
  readonly key: TicketKey;
  /** 'loaded', 'created' (no file yet) or 'replaced' (the file was unreadable; `problem` says why). */
  readonly outcome: 'loaded' | 'created' | 'replaced';
  readonly problem?: string;
}

/** Reads the data directory's ticket key, or makes and stores one. */
export async function loadOrCreateTicketKey(file: string, now: number): Promise<LoadedTicketKey> {
  let problem: string | undefined;
  try {
    const key = parse(await fs.readFile(file, 'utf8'));
    if (key) return { key, outcome: 'loaded' };
    problem = 'the file does not hold a 48-byte key';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problem = err instanceof Error ? err.message : String(err);
  }
  const key: TicketKey = { createdAt: now, keys: randomBytes(KEY_BYTES) };
  await write(file, key);
  return problem === undefined ? { key, outcome: 'created' } : { key, outcome: 'replaced', problem };
}

/** Replaces the key when it is older than `maxAgeMs`; resolves with the new key, or undefined when none was due. */
export async function rotateTicketKeyIfOld(file: string, current: TicketKey, now: number, maxAgeMs = TICKET_KEY_MAX_AGE_MS): Promise<TicketKey | undefined> {
  if (now - current.createdAt < maxAgeMs) return undefined;
  const key: TicketKey = { createdAt: now, keys: randomBytes(KEY_BYTES) };
  await write(file, key);
  return key;
}

/** How often a running server checks whether its ticket key is due for rotation. */
export const TICKET_ROTATION_CHECK_MS = 6 * 3_600_000;

/** What the rotation timer needs. */
export interface TicketRotationDeps {
  readonly file: string;
  readonly key: TicketKey;
  readonly now: () => number;
  /** Installs new keys: the agent listener, or every agent worker. */
  readonly onRotated: (keys: Buffer) => void;
  readonly log: Pick<Logger, 'info' | 'error'>;
}

/** Checks every few hours whether the key is due and rotates it; returns the stop function. */
export function startTicketRotation(deps: TicketRotationDeps): () => void {
  let current = deps.key;
  const timer = setInterval(() => {
    rotateTicketKeyIfOld(deps.file, current, deps.now()).then(
      (next) => {
        if (!next) return;
        current = next;
        deps.onRotated(next.keys);
        deps.log.info({ file: deps.file }, 'TLS ticket key rotated');
      },
      (err: unknown) => deps.log.error({ err: err instanceof Error ? err.message : String(err), file: deps.file }, 'cannot rotate the TLS ticket key; keeping the old one'),
    );
  }, TICKET_ROTATION_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
