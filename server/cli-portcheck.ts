/**
 * `rollcall portcheck <host>`: is this server visible from here, port by
 * port and step by step? Runs from anywhere (a customer's network, the
 * server itself) with the CA pin, and with `--report` stores the result on
 * the server as evidence for the customer whose enrollment token is given.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import type { ErrorBody } from '../common/enroll-api.js';
import { parseDuration } from '../common/duration.js';
import { describeError, RollcallError } from '../common/errors.js';
import { requestJson } from '../common/https-json.js';
import { fetchPinnedCa } from '../common/pinned-tls.js';
import { parsePin } from '../common/pki.js';
import { runPortcheck, type PortcheckTrust, type PortSpec } from '../common/portcheck/engine.js';
import { formatReport } from '../common/portcheck/format.js';
import { PORTCHECK_REPORT_PATH, type PortcheckReportAnswer } from '../common/portcheck/report-api.js';
import type { PortcheckReport } from '../common/portcheck/types.js';

/** Exit codes of `rollcall portcheck` (beyond the shared 1 and 2; 3-8 belong to other commands). */
export const PORTCHECK_EXIT = { OK: 0, USAGE: 2, PORTCHECK_FAILED: 9, REPORT_FAILED: 10 } as const;

/** Usage lines for `rollcall --help`. */
export const PORTCHECK_HELP = `Port check (from anywhere; no API token needed):
  rollcall portcheck HOST [--port 2222[:agent|:console] …] [--ca-pin sha256:… | --ca-file F | --data-dir D]
                    [--timeout 5s] [--instance ID] [--allow-private] [--json]
                    [--report [--token rce_…]]   (token also from ROLLCALL_ENROLL_TOKEN)
    Default ports: 2222 (agent, required) and 8443 (console, optional); ports given with --port
    are all required. Exit: 0 every required port passed; 9 a required port failed; 10 the
    check passed but --report could not store it.`;

const DEFAULT_PORTS: readonly PortSpec[] = [
  { port: 2222, role: 'agent', required: true },
  { port: 8443, role: 'console', required: false },
];

function parsePorts(specs: readonly string[] | undefined): readonly PortSpec[] {
  if (!specs || specs.length === 0) return DEFAULT_PORTS;
  return specs.map((text) => {
    const m = /^(\d{1,5})(?::(agent|console))?$/.exec(text.trim());
    const port = Number(m?.[1]);
    if (!m || port < 1 || port > 65535) throw usageError(`--port "${text}" is not PORT, PORT:agent or PORT:console`);
    return { port, role: m[2] === 'console' ? 'console' : 'agent', required: true };
  });
}

async function readCa(file: string, what: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read ${what} ${file}: ${describeError(err)}`);
  }
}

/** Trust from --ca-pin, else --ca-file, else the data directory's CA (on the server itself). */
async function resolveTrust(values: { 'ca-pin'?: string; 'ca-file'?: string; 'data-dir'?: string }, env: NodeJS.ProcessEnv): Promise<PortcheckTrust> {
  const pin = values['ca-pin'] ?? env.ROLLCALL_CA_PIN;
  if (pin) return { pin: parsePin(pin) };
  if (values['ca-file']) return { caPem: await readCa(values['ca-file'], '--ca-file') };
  const dataDir = values['data-dir'] ?? env.ROLLCALL_DATA_DIR;
  const file = path.join(path.resolve(dataDir ?? './data'), 'pki', 'ca.crt');
  if (dataDir !== undefined) return { caPem: await readCa(file, 'the CA certificate') };
  try {
    return { caPem: await fs.readFile(file, 'utf8') };
  } catch (err) {
    throw usageError(`give --ca-pin sha256:… (the pin the server printed) or --ca-file FILE; on the server, --data-dir DIR (${describeError(err)})`);
  }
}

/** Sends the report to the first agent port; returns the server's answer or throws with its error code. */
async function sendReport(report: PortcheckReport, trust: PortcheckTrust, token: string, timeoutMs: number): Promise<PortcheckReportAnswer> {
  const target = report.ports.find((p) => p.role === 'agent');
  if (!target) throw new RollcallError('USAGE', '--report needs an agent port in the check: it is sent there');
  const ca = 'caPem' in trust ? trust.caPem : await fetchPinnedCa(report.host, target.port, trust.pin, timeoutMs);
  const res = await requestJson({
    host: report.host,
    port: target.port,
    path: PORTCHECK_REPORT_PATH,
    method: 'POST',
    body: report,
    ca,
    headers: { authorization: `Bearer ${token}` },
    timeoutMs,
  });
  if (res.status === 201) return res.body as PortcheckReportAnswer;
  const e = (res.body as ErrorBody | undefined)?.error;
  throw new RollcallError(e?.code ?? `HTTP_${res.status}`, e?.message ?? `the server answered HTTP ${res.status}`);
}

/** Runs `rollcall portcheck`; returns the exit code. */
export async function portcheckCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    port: { type: 'string', multiple: true },
    'ca-pin': { type: 'string' },
    'ca-file': { type: 'string' },
    'data-dir': { type: 'string' },
    timeout: { type: 'string' },
    instance: { type: 'string' },
    'allow-private': { type: 'boolean' },
    json: { type: 'boolean' },
    report: { type: 'boolean' },
    token: { type: 'string' },
    debug: { type: 'boolean' },
  });
  const [host, ...extra] = positionals;
  if (!host) throw usageError('portcheck needs a HOST; see rollcall --help');
  if (extra.length > 0) throw usageError(`unexpected argument "${extra[0]}"; give ports with --port`);
  const token = values.token ?? env.ROLLCALL_ENROLL_TOKEN;
  if (values.report && !token) throw usageError('--report needs --token rce_… (or ROLLCALL_ENROLL_TOKEN): the enrollment token of the customer this network belongs to');
  const ports = parsePorts(values.port);
  const stepTimeoutMs = values.timeout === undefined ? 5000 : parseDuration(values.timeout);
  const trust = await resolveTrust(values, env);
  const report = await runPortcheck({ host, ports, trust, stepTimeoutMs, expectInstanceId: values.instance, allowPrivate: values['allow-private'] ?? false });
  io.out(values.json ? JSON.stringify(report) : formatReport(report));
  let reportFailed = false;
  if (values.report) {
    const say = values.json ? io.err : io.out;
    try {
      const answer = await sendReport(report, trust, token!, stepTimeoutMs);
      say(`report stored on the server: ${answer.stored} observation${answer.stored === 1 ? '' : 's'}`);
    } catch (err) {
      reportFailed = true;
      io.err(`report not stored: ${describeError(err)}${err instanceof RollcallError ? ` [${err.code}]` : ''}`);
    }
  }
  if (!report.ok) return PORTCHECK_EXIT.PORTCHECK_FAILED;
  return reportFailed ? PORTCHECK_EXIT.REPORT_FAILED : PORTCHECK_EXIT.OK;
}
