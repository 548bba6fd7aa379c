/**
 * The enrollment exchange on the agent port (`POST /v1/enroll`) and the
 * identification probe every listener answers. Shared by server and agent.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Ajv } from 'ajv';
import { RollcallError } from './errors.js';

/** Path of the enrollment route on the agent port. */
export const ENROLL_PATH = '/v1/enroll';
/** Path of the identification probe on every listener. */
export const IDENTIFY_PATH = '/.well-known/rollcall';
/** Largest enrollment request body, in bytes. */
export const MAX_ENROLL_BODY_BYTES = 16 * 1024;

/** Enrollment tokens: a fixed prefix and 43 base64url characters (256 bits). */
export const ENROLL_TOKEN_PATTERN = /^rce_[A-Za-z0-9_-]{43}$/;

/** Agent → server: enrollment request. */
export const EnrollRequest = Type.Object(
  {
    token: Type.String({ maxLength: 256 }),
    csr: Type.String({ maxLength: 8192 }),
    hostname: Type.String({ minLength: 1, maxLength: 253 }),
    fingerprint: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    agentVersion: Type.String({ minLength: 1, maxLength: 64 }),
  },
  { additionalProperties: false },
);
export type EnrollRequest = Static<typeof EnrollRequest>;

/** Server → agent: the issued identity. */
export const EnrollResponse = Type.Object(
  {
    deviceId: Type.String(),
    certificate: Type.String(),
    caCertificate: Type.String(),
    group: Type.Object({ id: Type.String(), path: Type.String() }),
    /** Why the device was not placed in the token's group, when it was not. */
    placementReason: Type.Union([Type.String(), Type.Null()]),
    checkinPath: Type.String(),
  },
  { additionalProperties: false },
);
export type EnrollResponse = Static<typeof EnrollResponse>;

/** The answer of the identification probe. */
export const Identity = Type.Object(
  {
    service: Type.Literal('rollcall'),
    instanceId: Type.String(),
    role: Type.Union([Type.Literal('agent'), Type.Literal('console')]),
    clientAddress: Type.String(),
    version: Type.String(),
    protocol: Type.Integer(),
  },
  { additionalProperties: false },
);
export type Identity = Static<typeof Identity>;

/** An error body from any Rollcall HTTP route. */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly retryAfterMs?: number };
}

const ajv = new Ajv({ strict: true });
const validateEnrollRequest = ajv.compile(EnrollRequest);
const validateEnrollResponse = ajv.compile(EnrollResponse);

/** Validates an enrollment request body; throws RollcallError `BAD_REQUEST`. */
export function checkEnrollRequest(body: unknown): EnrollRequest {
  if (!validateEnrollRequest(body)) {
    const e = validateEnrollRequest.errors?.[0];
    throw new RollcallError('BAD_REQUEST', `invalid enrollment request: ${e?.instancePath || '/'} ${e?.message ?? ''}`.trim());
  }
  return body as EnrollRequest;
}

/** Validates an enrollment response; throws RollcallError `ENROLL_BAD_RESPONSE`. */
export function checkEnrollResponse(body: unknown): EnrollResponse {
  if (!validateEnrollResponse(body)) {
    throw new RollcallError('ENROLL_BAD_RESPONSE', 'the server answered enrollment with an unexpected body');
  }
  return body as EnrollResponse;
}
