/**
 * Judging a presented certificate chain against our CA: trusted, expired,
 * for another name, untrusted, or intercepted by a TLS-inspecting
 * middlebox. Pure logic over DER certificates, no sockets.
 *
 * The interception heuristic: the chain does not lead to our CA, but the
 * leaf names exactly the host we dialled and is signed by a CA certificate
 * that came with it, and that CA is not one of the public roots Node
 * ships. That is what inspection proxies and firewalls do: they mint a
 * certificate for the requested name on the fly and sign it with their own
 * private CA. Everything else that is not ours is TLS_UNTRUSTED: a leaf
 * for another name (port forwarding to some other server), a leaf whose
 * issuer was not sent, or a publicly trusted certificate (another web
 * server that has a real certificate for this name). Another server with
 * its own private CA and a certificate for this very name looks the same
 * as a proxy; the detail names the foreign CA so a person can tell.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { RollcallError } from '../errors.js';
import { certInfo, spkiPin } from '../pki.js';
import { verifyChainAgainstPin } from '../pinned-tls.js';
import type { PortcheckFailure } from './types.js';
import { isoTime } from '../iso-time.js';

/** How the server is verified: our CA certificate, or its pin. */
export type PortcheckTrust = { readonly caPem: string } | { readonly pin: string };

/** The verdict on a chain. */
export type ChainVerdict =
  | { readonly ok: true; readonly caPem: string; readonly detail: string }
  | { readonly ok: false; readonly failure: PortcheckFailure; readonly detail: string };

function cn(dn: string): string {
  return /(?:^|\n)CN=([^\n]*)/.exec(dn)?.[1] ?? dn.replace(/\n/g, ', ');
}

function namesHost(cert: crypto.X509Certificate, host: string): boolean {
  return net.isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
}

function describeLeaf(der: Buffer): string {
  const info = certInfo(new crypto.X509Certificate(der).toString());
  return `"${info.subjectCommonName}" for ${info.subjectAltNames.join(', ') || 'no names'}`;
}

/** True when the top of the chain is, or is signed by, a root certificate Node trusts by default. */
function publiclyTrusted(chain: readonly crypto.X509Certificate[]): boolean {
  const top = chain[chain.length - 1]!;
  return tls.rootCertificates.some((pem) => {
    const root = new crypto.X509Certificate(pem);
    return top.fingerprint256 === root.fingerprint256 || (top.checkIssued(root) && top.verify(root.publicKey));
  });
}

function untrusted(chainDer: readonly Buffer[], host: string): ChainVerdict {
  const chain = chainDer.map((d) => new crypto.X509Certificate(d));
  const leaf = chain[0]!;
  const issuer = chain.slice(1).find((c) => c.ca && leaf.checkIssued(c) && leaf.verify(c.publicKey));
  const leafText = `the certificate ${describeLeaf(chainDer[0]!)}, issued by "${cn(leaf.issuer)}"`;
  if (issuer && namesHost(leaf, host) && !publiclyTrusted(chain)) {
    return {
      ok: false,
      failure: 'PROXY_INTERCEPTED',
      detail: `${leafText}, was made for ${host} by another certificate authority that came with it: a TLS-inspecting proxy re-signs this connection (or another server with its own CA for this name answers)`,
    };
  }
  const why = publiclyTrusted(chain) ? 'a publicly trusted certificate: another web server answers' : 'not our Rollcall CA';
  return { ok: false, failure: 'TLS_UNTRUSTED', detail: `${leafText}: ${why}` };
}

/** From a bundle of trusted CAs (an agent during a CA rotation), the one that issued the leaf, else the first. */
function pickTrusted(bundle: string, leafDer: Buffer): string {
  const pems = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [bundle];
  const leaf = new crypto.X509Certificate(leafDer);
  return pems.find((p) => leaf.checkIssued(new crypto.X509Certificate(p))) ?? pems[0]!;
}

/**
 * Judges a presented chain (leaf first, DER) for `host` at `now`. The
 * checks are those of verifyChainAgainstPin (trust, then validity, then the
 * name); with a CA certificate as trust, that certificate is added to the
 * candidates, so a server need not send it. A bundle of CA certificates
 * (an agent trusting the old and the new CA of a rotation) is judged by the
 * one that issued the leaf.
 */
export function judgeChain(chainDer: readonly Buffer[], trust: PortcheckTrust, host: string, now: number): ChainVerdict {
  if (chainDer.length === 0) return { ok: false, failure: 'TLS_HANDSHAKE_FAILED', detail: 'the server presented no certificate' };
  const trusted = 'caPem' in trust ? pickTrusted(trust.caPem, chainDer[0]!) : undefined;
  const candidates = trusted ? [...chainDer, new crypto.X509Certificate(trusted).raw] : chainDer;
  const pin = trusted ? spkiPin(trusted) : (trust as { pin: string }).pin;
  let caPem: string;
  try {
    caPem = verifyChainAgainstPin(candidates, pin, host, new Date(now));
  } catch (err) {
    if (!(err instanceof RollcallError)) throw err;
    if (err.code === 'CA_PIN_MISMATCH' || err.code === 'TLS_UNTRUSTED') return untrusted(chainDer, host);
    if (err.code === 'TLS_EXPIRED') return { ok: false, failure: 'TLS_EXPIRED', detail: err.message };
    if (err.code === 'TLS_NAME_MISMATCH') return { ok: false, failure: 'TLS_NAME_MISMATCH', detail: `${err.message}: it is ${describeLeaf(chainDer[0]!)}` };
    return { ok: false, failure: 'TLS_HANDSHAKE_FAILED', detail: err.message };
  }
  const leaf = new crypto.X509Certificate(chainDer[0]!);
  const until = isoTime(new Date(leaf.validTo)).slice(0, 10);
  return { ok: true, caPem, detail: `${describeLeaf(chainDer[0]!)}, issued by "${cn(leaf.issuer)}" (our CA), valid until ${until}` };
}
