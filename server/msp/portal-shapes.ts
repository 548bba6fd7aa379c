/**
 * The adapter between the MSP portal's answers and our types: the one place
 * that knows the shape of each answer, including everything the portal's
 * documentation leaves unpublished (see ../shared/domain.md, "The MSP
 * portal's API"). Pure: no I/O. When the real portal turns out to answer
 * differently, this file is the one to change.
 *
 * Every parser throws RollcallError `SYNC_PORTAL_BAD_RESPONSE` naming the
 * call, and never echoes a token or a whole answer into the message.
 */
import { RollcallError } from '../../common/errors.js';
import { TREE_LIMITS, type PortalCompany } from './tree.js';

/** The calls we make, as path suffixes below the base URL. */
export const PortalCall = {
  TOKEN_GET: 'api/Token/Get',
  TOKEN_RENEW: 'api/Token/Renew',
  USER_CURRENT: 'api/User/Current',
  COMPANY_CHILDREN: 'api/Company/Children',
  COMPANY_DETAIL: 'api/Company/Detail',
} as const;
/** One of the calls in {@link PortalCall}. */
export type PortalCall = (typeof PortalCall)[keyof typeof PortalCall];

/** Largest `take` the portal accepts (published: 1..100). */
export const MAX_PAGE_SIZE = 100;

/**
 * Status values we know (ASSUMED: unpublished). An unknown value is kept as
 * given and shown, never fatal.
 */
export const KNOWN_STATUSES: readonly string[] = ['Active', 'Suspended', 'WaitingForActivation'];

/**
 * Status codes with which Token/Get refuses credentials, and Token/Renew
 * refuses a refresh token (ASSUMED: the portal documents 401 for an invalid
 * token; we also accept 400 and 403 as "refused").
 */
export const REFUSED_STATUSES: ReadonlySet<number> = new Set([400, 401, 403]);

/**
 * Status meaning maintenance (published: 503 with error code 99, sub-code 2).
 * We treat every 503 as maintenance and do not parse its body.
 */
export const MAINTENANCE_STATUS = 503;

/** A token pair (published: `{ accessToken, refreshToken }`, for Get and Renew alike). */
export interface TokenPair {
  readonly accessToken: string;
  readonly refreshToken: string;
}

/** One page of a list call. */
export interface CompanyPage {
  readonly companies: readonly Omit<PortalCompany, 'parentId'>[];
  readonly totalCount: number;
}

/** Longest token we put in a header; a longer one is a broken answer. */
const MAX_TOKEN_LENGTH = 16 * 1024;

function bad(call: PortalCall, what: string): RollcallError {
  return new RollcallError('SYNC_PORTAL_BAD_RESPONSE', `the MSP portal's answer to ${call.slice(4)} ${what}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function record(call: PortalCall, value: unknown): Record<string, unknown> {
  if (!isRecord(value)) throw bad(call, 'is not a JSON object');
  return value;
}

/** Quotes text from the portal for an error message: truncated, control characters escaped by JSON. */
export function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/**
 * An id: published as a string (`publicId` / `companyId`). ASSUMED: a
 * safe integer is accepted too and turned into its decimal string.
 */
function id(call: PortalCall, value: unknown, what: string): string {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  if (typeof value !== 'string' || value.length === 0) throw bad(call, `has no ${what} (a non-empty string)`);
  if (value.length > TREE_LIMITS.maxIdLength) throw bad(call, `has a ${what} of ${value.length} characters`);
  return value;
}

function token(call: PortalCall, value: unknown, what: string): string {
  // The token's value never goes into a message.
  if (typeof value !== 'string' || value.length === 0) throw bad(call, `has no ${what}`);
  if (value.length > MAX_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(value)) throw bad(call, `has an unusable ${what}`);
  return value;
}

/** Parses the answer of Token/Get or Token/Renew (published shape). */
export function parseTokenPair(call: PortalCall, body: unknown): TokenPair {
  const o = record(call, body);
  return { accessToken: token(call, o.accessToken, 'accessToken'), refreshToken: token(call, o.refreshToken, 'refreshToken') };
}

/**
 * Parses the answer of User/Current into the user's own company id.
 * ASSUMED (unpublished): `{ "companyId": "…", … }` at the top level.
 */
export function parseCurrentUser(body: unknown): string {
  return id(PortalCall.USER_CURRENT, record(PortalCall.USER_CURRENT, body).companyId, 'companyId');
}

/**
 * Parses one company (published field names: `name`, `publicId`, `type`,
 * `email`, `status`). Other fields are ignored.
 * ASSUMED: `type` is the numeric entity code (a string of digits is
 * accepted too); `email` may be missing, null or empty (→ null); `status`
 * is a string (a number is kept as its decimal text) and, when missing,
 * becomes "Unknown".
 */
export function parseCompany(call: PortalCall, value: unknown, where: string): Omit<PortalCompany, 'parentId'> {
  if (!isRecord(value)) throw bad(call, `has ${where} that is not an object`);
  const publicId = id(call, value.publicId, `publicId in ${where}`);
  const at = `${where} (publicId ${quote(publicId)})`;
  if (typeof value.name !== 'string') throw bad(call, `has no name in ${at}`);
  let type = value.type;
  if (typeof type === 'string' && /^\d{1,9}$/.test(type)) type = Number(type);
  if (typeof type !== 'number' || !Number.isInteger(type)) throw bad(call, `has no numeric type in ${at}`);
  const email = value.email;
  if (email !== undefined && email !== null && typeof email !== 'string') throw bad(call, `has an email that is not a string in ${at}`);
  let status = value.status;
  if (typeof status === 'number' && Number.isFinite(status)) status = String(status);
  if (status !== undefined && typeof status !== 'string') throw bad(call, `has a status that is not a string in ${at}`);
  return {
    id: publicId,
    name: value.name,
    type,
    email: typeof email === 'string' && email.length > 0 ? email : null,
    status: typeof status === 'string' ? status : 'Unknown',
  };
}

/**
 * Parses the answer of Company/Detail.
 * ASSUMED (unpublished): the company object itself; a `{ "company": {…} }`
 * wrapper is accepted too. Its ancestors (published) are not needed.
 */
export function parseCompanyDetail(body: unknown): Omit<PortalCompany, 'parentId'> {
  const call = PortalCall.COMPANY_DETAIL;
  const o = record(call, body);
  return parseCompany(call, isRecord(o.company) ? o.company : o, 'the company');
}

/**
 * Parses one page of Company/Children.
 * ASSUMED (unpublished): `{ "companies": [ … ], "totalCount": n }`, where
 * `totalCount` counts all first-level children of the parent (every page
 * of the same parent repeats it).
 */
export function parseCompanyPage(body: unknown): CompanyPage {
  const call = PortalCall.COMPANY_CHILDREN;
  const o = record(call, body);
  if (!Array.isArray(o.companies)) throw bad(call, 'has no "companies" list');
  const total = o.totalCount;
  if (typeof total !== 'number' || !Number.isSafeInteger(total) || total < 0) throw bad(call, 'has no "totalCount" (a whole number)');
  const companies = o.companies.map((c: unknown, i) => parseCompany(call, c, `companies[${i}]`));
  return { companies, totalCount: total };
}
