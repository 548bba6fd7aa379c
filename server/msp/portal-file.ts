/**
 * The file export of an MSP structure, for `rollcall msp link --file
 * tree.json`: a versioned JSON document (format "rollcall-msp-tree",
 * version 1) described field by field in docs/msp-export.md.
 *
 * The document is validated with a TypeBox schema and Ajv; every refusal is
 * RollcallError `SYNC_FILE_INVALID` saying where (`companies[3] (id
 * "c-17").type must be …`). Tree rules (duplicate ids, orphans, cycles) are
 * left to `validateTree`, which every source goes through.
 */
import fs from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import { RollcallError } from '../../common/errors.js';
import { ACCOUNT_TYPES, TREE_LIMITS, type PortalTree } from './tree.js';

/** The value of the `format` field. */
export const TREE_EXPORT_FORMAT = 'rollcall-msp-tree';
/** The only version this Rollcall reads. */
export const TREE_EXPORT_VERSION = 1;
/** Largest export accepted, in bytes. */
export const MAX_TREE_EXPORT_BYTES = 64 * 1024 * 1024;

const Id = Type.String({ minLength: 1, maxLength: TREE_LIMITS.maxIdLength });
const Name = Type.String({ minLength: 1, maxLength: TREE_LIMITS.maxNameLength });
const Status = Type.String({ minLength: 1, maxLength: 64 });
const Email = Type.Unsafe<string | null>({ type: ['string', 'null'], maxLength: 320 });
const AccountType = Type.Unsafe<number>({ type: 'integer', enum: [...ACCOUNT_TYPES] });
const CompanyType = Type.Integer({ minimum: 1001, maximum: 1007 });

/** Version 1 of the export (see docs/msp-export.md). */
export const TreeExportV1 = Type.Object(
  {
    format: Type.Literal(TREE_EXPORT_FORMAT),
    version: Type.Literal(TREE_EXPORT_VERSION),
    portal: Type.Unsafe<'msp' | 'business'>({ type: 'string', enum: ['msp', 'business'] }),
    exportedAt: Type.Optional(Type.String({ maxLength: 64, pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}' })),
    generator: Type.Optional(Type.String({ maxLength: 256 })),
    account: Type.Object({ id: Id, name: Name, type: AccountType, status: Type.Optional(Status), email: Type.Optional(Email) }, { additionalProperties: false }),
    companies: Type.Array(
      Type.Object({ id: Id, name: Name, type: CompanyType, parentId: Id, status: Type.Optional(Status), email: Type.Optional(Email) }, { additionalProperties: false }),
      { maxItems: TREE_LIMITS.maxCompanies },
    ),
  },
  { additionalProperties: false },
);
/** A validated version 1 export. */
export type TreeExportV1 = Static<typeof TreeExportV1>;

function invalid(source: string, message: string): RollcallError {
  return new RollcallError('SYNC_FILE_INVALID', `${source}: ${message}`);
}

/** `/companies/3/type` → `companies[3] (id "c-17").type`, naming the company when it has an id. */
function where(doc: unknown, pointer: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let out = '';
  let node: unknown = doc;
  for (const part of parts) {
    node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
    if (/^\d+$/.test(part)) {
      out += `[${part}]`;
      const id = typeof node === 'object' && node !== null ? (node as Record<string, unknown>).id : undefined;
      if (typeof id === 'string' && id.length > 0) out += ` (id ${JSON.stringify(id.slice(0, 80))})`;
    } else out += out ? `.${part}` : part;
  }
  return out || 'the document';
}

function describe(doc: unknown, e: ErrorObject): string {
  const at = where(doc, e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${at} is missing the field "${String(p.missingProperty)}"`;
    case 'additionalProperties':
      return `${at} has an unknown field "${String(p.additionalProperty).slice(0, 80)}"`;
    case 'enum':
      return `${at} must be one of ${(p.allowedValues as unknown[]).join(', ')}`;
    case 'const':
      return `${at} must be ${JSON.stringify(p.allowedValue)}`;
    default:
      return `${at} ${e.message ?? 'is invalid'}`;
  }
}

/** True when `rest` is an unfinished string or literal: the text ended too early, it is not wrong. */
function cutShort(rest: string): boolean {
  // eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings; that is the point
  return /^"(?:[^"\\\u0000-\u001f]|\\.)*\\?$/.test(rest) || ['true', 'false', 'null'].some((w) => w.startsWith(rest));
}

type JsonState = 'value' | 'firstValue' | 'key' | 'firstKey' | 'colon' | 'next' | 'end';

/** Offset of the first character that makes `text` invalid JSON (its length when it ends too early). */
export function jsonErrorOffset(text: string): number {
  const space = /[ \t\n\r]*/y;
  // eslint-disable-next-line no-control-regex -- as above
  const token = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|[{}[\]:,]/y;
  const stack: string[] = [];
  const after = (): JsonState => (stack.length === 0 ? 'end' : 'next');
  let state: JsonState = 'value';
  for (let i = 0; ; ) {
    space.lastIndex = i;
    space.exec(text);
    i = space.lastIndex;
    if (i >= text.length) return text.length;
    token.lastIndex = i;
    const t = token.exec(text)?.[0];
    if (t === undefined) return cutShort(text.slice(i)) ? text.length : i;
    if (state === 'end') return i;
    const scalar = !'{}[]:,'.includes(t);
    if ((state === 'firstValue' && t === ']') || (state === 'firstKey' && t === '}')) {
      stack.pop();
      state = after();
    } else if (state === 'value' || state === 'firstValue') {
      if (t === '{' || t === '[') stack.push(t);
      else if (!scalar) return i;
      state = t === '{' ? 'firstKey' : t === '[' ? 'firstValue' : after();
    } else if (state === 'key' || state === 'firstKey') {
      if (!t.startsWith('"')) return i;
      state = 'colon';
    } else if (state === 'colon') {
      if (t !== ':') return i;
      state = 'value';
    } else {
      const open = stack.at(-1);
      if (t === ',') state = open === '{' ? 'key' : 'value';
      else if ((t === '}' && open === '{') || (t === ']' && open === '[')) {
        stack.pop();
        state = after();
      } else return i;
    }
    i += t.length;
  }
}

function jsonError(text: string): string {
  const at = jsonErrorOffset(text);
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  const column = at - before.lastIndexOf('\n');
  const what = at >= text.length ? 'the text ends too early' : `unexpected ${JSON.stringify(text.slice(at, at + 12))}`;
  return `is not valid JSON: ${what} at line ${line}, column ${column}`;
}

/**
 * Parses and validates an export, returning the document itself (with its
 * `portal` and other metadata). `source` names the file in messages.
 */
export function decodeTreeExport(text: string, source = 'the MSP tree export'): TreeExportV1 {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_TREE_EXPORT_BYTES) throw invalid(source, `is ${bytes} bytes long; at most ${MAX_TREE_EXPORT_BYTES} are accepted`);
  let doc: unknown;
  try {
    doc = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new RollcallError('SYNC_FILE_INVALID', `${source}: ${jsonError(text.replace(/^\uFEFF/, ''))}`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalid(source, 'is not a JSON object');
  const { format, version } = doc as Record<string, unknown>;
  if (format !== TREE_EXPORT_FORMAT) {
    throw invalid(source, `is not a Rollcall MSP tree export: "format" must be "${TREE_EXPORT_FORMAT}" (got ${JSON.stringify(format ?? null)?.slice(0, 60)})`);
  }
  if (version !== TREE_EXPORT_VERSION) {
    throw invalid(source, `has version ${JSON.stringify(version ?? null)?.slice(0, 20)}; this Rollcall reads version ${TREE_EXPORT_VERSION} only`);
  }
  const validate = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile<TreeExportV1>(TreeExportV1);
  if (!validate(doc)) throw invalid(source, describe(doc, validate.errors![0]!));
  return doc;
}

/** Parses an export into a tree for `validateTree`; missing `status` is "Active", missing `email` is null. */
export function parseTreeExport(text: string, source?: string): PortalTree {
  const doc = decodeTreeExport(text, source);
  const a = doc.account;
  return {
    portal: doc.portal,
    account: { id: a.id, name: a.name, type: a.type, parentId: null, status: a.status ?? 'Active', email: a.email ?? null },
    companies: doc.companies.map((c) => ({ id: c.id, name: c.name, type: c.type, parentId: c.parentId, status: c.status ?? 'Active', email: c.email ?? null })),
  };
}

/**
 * Reads and parses an export file, refusing anything but a regular file of
 * at most `maxBytes` before reading it. Missing or unreadable files are
 * `SYNC_FILE_UNREADABLE`; bad content is `SYNC_FILE_INVALID`.
 */
export async function readTreeExport(path: string, maxBytes = MAX_TREE_EXPORT_BYTES): Promise<PortalTree> {
  const unreadable = (why: string, cause?: unknown): RollcallError =>
    new RollcallError('SYNC_FILE_UNREADABLE', `cannot read the MSP tree export ${path}: ${why}`, { cause });
  const st = await fs.stat(path).catch((err: NodeJS.ErrnoException) => {
    throw unreadable(err.code ?? err.message, err);
  });
  // A FIFO or device could block or never end; only a regular file is read.
  if (!st.isFile()) throw unreadable('it is not a regular file');
  if (st.size > maxBytes) throw invalid(path, `is ${st.size} bytes long; at most ${maxBytes} are accepted`);
  const handle = await fs.open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw unreadable(err.code ?? err.message, err);
  });
  try {
    const buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > maxBytes || n === buf.length) break;
    }
    if (n > maxBytes || n > st.size) throw invalid(path, `grew while being read; at most ${maxBytes} bytes are accepted`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n));
    } catch (err) {
      throw new RollcallError('SYNC_FILE_INVALID', `${path}: is not UTF-8 text`, { cause: err });
    }
    return parseTreeExport(text, path);
  } finally {
    await handle.close();
  }
}
