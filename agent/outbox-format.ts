/**
 * The outbox file format: a sequence of framed records, each
 *
 *     [length: u32 BE][crc32 of the payload: u32 BE][payload: UTF-8 JSON]
 *
 * A payload is either an event `{ seq, kind, at, data }` or a floor marker
 * `{ floor: n }` saying that every event with `seq <= n` is finished
 * (acknowledged by the server, or dropped because the outbox was full).
 * Pure: no I/O, so recovery from torn and damaged files is tested without a
 * disk.
 */
import zlib from 'node:zlib';

/** Bytes of the frame header (length and CRC). */
export const RECORD_HEADER_BYTES = 8;
/** Largest payload a record may carry; anything claiming more is damage. */
export const MAX_RECORD_BYTES = 60 * 1024;

/** One event as stored and as sent. */
export interface OutboxEvent {
  readonly seq: number;
  readonly kind: string;
  /** Agent clock, Unix ms, when the event was recorded. */
  readonly at: number;
  readonly data: unknown;
}

/** A decoded record. */
export type OutboxRecord = { readonly event: OutboxEvent } | { readonly floor: number };

/** Frames one record. */
export function encodeRecord(record: OutboxRecord): Buffer {
  const payload = Buffer.from(JSON.stringify('event' in record ? record.event : { floor: record.floor }), 'utf8');
  if (payload.length > MAX_RECORD_BYTES) throw new RangeError(`outbox record of ${payload.length} bytes exceeds ${MAX_RECORD_BYTES}`);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt32BE(zlib.crc32(payload), 4);
  return Buffer.concat([header, payload]);
}

/** What reading a file found. */
export interface DecodedFile {
  /** Records in file order, each with the byte size of its frame. */
  readonly records: readonly { readonly record: OutboxRecord; readonly bytes: number }[];
  /** Length of the good prefix; everything after it is damaged or torn. */
  readonly goodBytes: number;
  /** Why reading stopped early, or null when the whole file was good. */
  readonly problem: string | null;
}

function parsePayload(payload: Buffer): OutboxRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return null; // a CRC-valid frame with a bad payload is damage like any other; the caller reports it
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (Number.isSafeInteger(v.floor) && (v.floor as number) >= 0) return { floor: v.floor as number };
  if (Number.isSafeInteger(v.seq) && (v.seq as number) >= 1 && typeof v.kind === 'string' && Number.isFinite(v.at)) {
    return { event: { seq: v.seq as number, kind: v.kind, at: v.at as number, data: v.data ?? null } };
  }
  return null;
}

/** Reads every good record from the start of `buf`, stopping at the first torn or damaged one. */
export function decodeRecords(buf: Buffer): DecodedFile {
  const records: { record: OutboxRecord; bytes: number }[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const stop = (problem: string): DecodedFile => ({ records, goodBytes: offset, problem: `${problem} at byte ${offset}` });
    if (buf.length - offset < RECORD_HEADER_BYTES) return stop('torn record header');
    const length = buf.readUInt32BE(offset);
    const crc = buf.readUInt32BE(offset + 4);
    if (length === 0 || length > MAX_RECORD_BYTES) return stop(`impossible record length ${length}`);
    if (buf.length - offset - RECORD_HEADER_BYTES < length) return stop('torn record');
    const payload = buf.subarray(offset + RECORD_HEADER_BYTES, offset + RECORD_HEADER_BYTES + length);
    if (zlib.crc32(payload) !== crc) return stop('checksum mismatch');
    const record = parsePayload(payload);
    if (!record) return stop('unreadable record');
    records.push({ record, bytes: RECORD_HEADER_BYTES + length });
    offset += RECORD_HEADER_BYTES + length;
  }
  return { records, goodBytes: offset, problem: null };
}
