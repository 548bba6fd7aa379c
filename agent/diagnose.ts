/**
 * `rollcall-agent diagnose`: the connectivity self-test on the endpoint.
 * For every server in the agent's list, the port-check engine with the
 * agent's own CA and certificate: DNS, TCP, TLS, identification and the
 * `diagnose` round trip on the check-in channel (which leaves the running
 * agent's channel alone). Exit 0 only when every server's agent port
 * passes.
 *
 * A private DNS answer is noted but not failed here: what matters on the
 * endpoint is whether this agent gets through, and an agent on the
 * server's own LAN (split DNS) legitimately sees a private address.
 */
import { parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { parseDuration } from '../common/duration.js';
import { parseHostPort } from '../common/https-json.js';
import { runPortcheck, type Resolve } from '../common/portcheck/engine.js';
import { formatReport } from '../common/portcheck/format.js';
import type { PortcheckReport } from '../common/portcheck/types.js';
import type { ListenerPort } from '../common/protocol.js';
import { resolveCommon } from './config.js';
import { AgentState } from './state.js';

/** The default agent port, for server entries without one. */
const DEFAULT_AGENT_PORT = 2222;

/** What a diagnosis needs: the agent's credentials as the state directory holds them. */
export interface DiagnoseOptions {
  readonly creds: Awaited<ReturnType<AgentState['loadCredentials']>>;
  readonly stepTimeoutMs?: number;
  /** Seam: the resolver (default: the system's). */
  readonly resolve?: Resolve;
  /** The ports the server advertised (see AgentState.loadListenerPorts); its other listeners are checked too, as not required. */
  readonly listenerPorts?: readonly ListenerPort[];
}

/** The outcome of a diagnosis: one report per server entry. */
export interface Diagnosis {
  readonly deviceId: string;
  /** True when every server's agent port passed. */
  readonly ok: boolean;
  readonly servers: readonly PortcheckReport[];
}

/** Checks every server of the agent's list, in parallel. */
export async function diagnoseServers(opts: DiagnoseOptions): Promise<Diagnosis> {
  const { identity, caPem, certPem, keyPem } = opts.creds;
  const servers = await Promise.all(
    identity.servers.map((entry) => {
      const { host, port } = parseHostPort(entry, DEFAULT_AGENT_PORT);
      const others = (opts.listenerPorts ?? []).filter((p) => p.role !== 'agent' && p.port !== port).map((p) => ({ port: p.port, role: p.role, required: false }));
      return runPortcheck({
        host,
        ports: [{ port, role: 'agent', required: true }, ...others],
        trust: { caPem },
        clientCert: { certPem, keyPem },
        allowPrivate: true,
        stepTimeoutMs: opts.stepTimeoutMs,
        resolve: opts.resolve,
      });
    }),
  );
  return { deviceId: identity.deviceId, ok: servers.every((r) => r.ok), servers };
}

/** Runs `rollcall-agent diagnose`; resolves true when every server passed (the caller maps it to the exit code). */
export async function diagnoseCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<boolean> {
  const { values, positionals } = parseCommandArgs(args, {
    'state-dir': { type: 'string' },
    json: { type: 'boolean' },
    timeout: { type: 'string' },
    debug: { type: 'boolean' },
  });
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"`);
  const stepTimeoutMs = values.timeout === undefined ? 5000 : parseDuration(values.timeout);
  const state = new AgentState(resolveCommon(values, env).stateDir);
  const creds = await state.loadCredentials();
  const diagnosis = await diagnoseServers({ creds, stepTimeoutMs, listenerPorts: await state.loadListenerPorts() });
  if (values.json) io.out(JSON.stringify(diagnosis));
  else {
    const verdict = diagnosis.ok ? 'every server passed' : 'some server failed';
    io.out([`rollcall-agent diagnose: device ${diagnosis.deviceId}, ${verdict}`, ...diagnosis.servers.flatMap((r) => ['', formatReport(r)])].join('\n'));
  }
  return diagnosis.ok;
}
