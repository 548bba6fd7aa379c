/**
 * `rollcall portcheck --report`: the route on the agent port that takes a
 * port-check report as evidence for the customer whose enrollment token
 * authenticates it, and the bounded schema of its body. Shared by the CLI
 * that sends a report and the server that stores it.
 */
import { Type, type Static } from '@sinclair/typebox';
import { PORTCHECK_FAILURES, PORTCHECK_STEPS, type PortcheckFailure } from './types.js';

/** Path of the report route on the agent port. */
export const PORTCHECK_REPORT_PATH = '/v1/portcheck/report';
/** Most ports one check (and one report) may hold. */
export const MAX_PORTCHECK_PORTS = 64;
/** Longest detail, message or remedy text in a report; the engine truncates its own texts to this. */
export const MAX_PORTCHECK_TEXT = 512;
/** Largest report body the server accepts, in bytes (64 ports with every text at its limit fit). */
export const MAX_PORTCHECK_REPORT_BYTES = 512 * 1024;

const FailureName = Type.Union((Object.keys(PORTCHECK_FAILURES) as PortcheckFailure[]).map((name) => Type.Literal(name)));
const StepName = Type.Union(PORTCHECK_STEPS.map((step) => Type.Literal(step)));
const Text = Type.String({ maxLength: MAX_PORTCHECK_TEXT });
const Host = Type.String({ minLength: 1, maxLength: 253 });
const Role = Type.Union([Type.Literal('agent'), Type.Literal('console')]);
const Millis = Type.Number({ minimum: 0, maximum: 86_400_000 });

const StepSchema = Type.Object(
  { step: StepName, ok: Type.Boolean(), ms: Millis, detail: Text, failure: Type.Optional(FailureName) },
  { additionalProperties: false },
);

const PortSchema = Type.Object(
  {
    host: Host,
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    role: Role,
    required: Type.Boolean(),
    ok: Type.Boolean(),
    steps: Type.Array(StepSchema, { maxItems: PORTCHECK_STEPS.length }),
    failure: Type.Optional(Type.Object({ class: FailureName, step: StepName, message: Text, remedy: Text }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

/** The body of a report: a PortcheckReport, bounded in every dimension. */
export const PortcheckReportBody = Type.Object(
  {
    host: Host,
    startedAt: Type.String({ minLength: 1, maxLength: 40 }),
    durationMs: Millis,
    addresses: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 64 }),
    ports: Type.Array(PortSchema, { minItems: 1, maxItems: MAX_PORTCHECK_PORTS }),
    ok: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type PortcheckReportBody = Static<typeof PortcheckReportBody>;

/** The server's answer to a stored report. */
export interface PortcheckReportAnswer {
  /** Observations stored: one per port. */
  readonly stored: number;
}
