/**
 * `rollcall-agent repin --ca-pin sha256:…`: the way back for an agent that
 * was offline during a whole CA rotation overlap. Trust comes from the new
 * pin exactly as at enrollment: the agent fetches the server's chain, which
 * must contain a CA matching the pin that signed a leaf valid for the host
 * dialled (common/pinned-tls.ts). That CA is added to the trusted ones (the
 * old stays: the agent's own certificate may still come from it, and the
 * server keeps trusting it for client certificates), and the pin is kept.
 * The next `run` then renews the agent's certificate from the new CA.
 */
import { parseHostPort } from '../common/https-json.js';
import type { ProxyConfig } from '../common/http-proxy.js';
import { fetchPinnedCa } from '../common/pinned-tls.js';
import { parsePin, spkiPin } from '../common/pki.js';
import { DEFAULT_AGENT_PORT } from './enroll.js';
import { splitPems, type AgentState } from './state.js';

/** Options for {@link repinAgent}. */
export interface RepinOptions {
  readonly state: AgentState;
  readonly caPin: string;
  readonly proxy?: ProxyConfig;
  readonly timeoutMs?: number;
}

/** Trusts the CA with the new pin as the server presents it; resolves with the server that showed it. */
export async function repinAgent(opts: RepinOptions): Promise<{ server: string; caPin: string; trusted: number }> {
  const pin = parsePin(opts.caPin);
  const { identity, caPem } = await opts.state.loadCredentials();
  let lastError: unknown;
  for (const server of identity.servers) {
    const { host, port } = parseHostPort(server, DEFAULT_AGENT_PORT);
    try {
      const fresh = await fetchPinnedCa(host, port, pin, opts.timeoutMs, opts.proxy);
      const kept = splitPems(caPem).filter((p) => spkiPin(p) !== pin);
      const trusted = [fresh, ...kept];
      await opts.state.saveTrustedCas(trusted);
      await opts.state.saveIdentity({ ...identity, caPin: pin });
      return { server, caPin: pin, trusted: trusted.length };
    } catch (err) {
      lastError = err; // try the next server of the list; the last error is reported
    }
  }
  throw lastError;
}
