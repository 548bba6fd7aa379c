import crypto from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { readTestCa } from '../../test/support/harness.js';
import { RollcallError } from '../errors.js';
import { verifyChainAgainstPin } from '../pinned-tls.js';
import {
  certInfo,
  createCsr,
  generateKeyPair,
  isIssuedBy,
  issueClientCert,
  issueServerCert,
  normalizeSerial,
  parseCsr,
  parsePin,
  spkiPin,
} from '../pki.js';

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof RollcallError) return err.code;
    throw err;
  }
  return 'no error';
};

function pemToDer(pem: string): Buffer {
  return new crypto.X509Certificate(pem).raw;
}

describe('PKI', () => {
  it('issues a CA whose certificates verify with Node crypto, and an agent certificate for a CSR', async () => {
    const ca = await readTestCa();
    const keys = generateKeyPair();
    const csr = parseCsr(createCsr(keys.privateKeyPem, 'pc-1'));
    expect(csr.bits).toBe(2048);
    const issued = issueClientCert(ca, { publicKeyPem: csr.publicKeyPem, deviceId: 'dev_abc' });
    const x = new crypto.X509Certificate(issued.certPem);
    expect(isIssuedBy(issued.certPem, ca.certPem)).toBe(true);
    expect(x.ca).toBe(false);
    expect(certInfo(issued.certPem)).toMatchObject({ serial: issued.serial, subjectCommonName: 'dev_abc' });
    expect(x.publicKey.export({ type: 'spki', format: 'pem' })).toBe(crypto.createPublicKey(keys.privateKeyPem).export({ type: 'spki', format: 'pem' }));
    expect(issued.serial).toMatch(/^[4-7][0-9A-F]{31}$/);
  });

  it('issues server certificates for every host, names and addresses alike', async () => {
    const ca = await readTestCa();
    const server = issueServerCert(ca, { hosts: ['rollcall.example.net', '203.0.113.7', 'localhost'] });
    const x = new crypto.X509Certificate(server.certPem);
    expect(x.checkHost('rollcall.example.net')).toBe('rollcall.example.net');
    expect(x.checkIP('203.0.113.7')).toBe('203.0.113.7');
    expect(x.checkHost('other.example.net')).toBeUndefined();
    expect(() => issueServerCert(ca, { hosts: [] })).toThrow(/at least one host/);
  });

  it('does not issue a certificate for another CA to verify', async () => {
    const ca = await readTestCa();
    const foreign = await readTestCa('foreign-ca');
    const issued = issueClientCert(foreign, { publicKeyPem: generateKeyPair().publicKeyPem, deviceId: 'dev_x' });
    expect(isIssuedBy(issued.certPem, ca.certPem)).toBe(false);
  });

  it('refuses malformed, weak, non-RSA and forged CSRs with distinct codes', () => {
    expect(codeOf(() => parseCsr('hello'))).toBe('CSR_MALFORMED');
    expect(codeOf(() => parseCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----'))).toBe('CSR_MALFORMED');

    const weak = forge.pki.rsa.generateKeyPair(1024);
    const weakCsr = forge.pki.createCertificationRequest();
    weakCsr.publicKey = weak.publicKey;
    weakCsr.sign(weak.privateKey, forge.md.sha256.create());
    expect(codeOf(() => parseCsr(forge.pki.certificationRequestToPem(weakCsr)))).toBe('CSR_WEAK_KEY');

    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ecCsrDer = buildEcCsrLikeDer(ec.publicKey.export({ type: 'spki', format: 'der' }));
    expect(['CSR_UNSUPPORTED_KEY', 'CSR_MALFORMED']).toContain(codeOf(() => parseCsr(ecCsrDer)));

    const a = generateKeyPair();
    const forged = forge.pki.certificationRequestFromPem(createCsr(a.privateKeyPem, 'x')) as unknown as { signature: string };
    forged.signature = String.fromCharCode(forged.signature.charCodeAt(0) ^ 1) + forged.signature.slice(1);
    expect(codeOf(() => parseCsr(forge.pki.certificationRequestToPem(forged as never)))).toBe('CSR_BAD_SIGNATURE');
  });

  it('pins the SHA-256 of the CA SubjectPublicKeyInfo, stable across re-issue with the same key', async () => {
    const ca = await readTestCa();
    const spki = crypto.createPublicKey(ca.keyPem).export({ type: 'spki', format: 'der' });
    expect(spkiPin(ca.certPem)).toBe(`sha256:${crypto.createHash('sha256').update(spki).digest('hex')}`);
    expect(parsePin(spkiPin(ca.certPem).toUpperCase().replace('SHA256', 'sha256'))).toBe(spkiPin(ca.certPem));
    expect(codeOf(() => parsePin('sha1:abcd'))).toBe('PIN_MALFORMED');
    expect(normalizeSerial('00ABc1')).toBe('ABC1');
  });

  it('accepts a chain only when a certificate matches the pin, signed the leaf, and the leaf names the host', async () => {
    const ca = await readTestCa();
    const foreign = await readTestCa('foreign-ca');
    const server = issueServerCert(ca, { hosts: ['localhost', '127.0.0.1'] });
    const chain = [pemToDer(server.certPem), pemToDer(ca.certPem)];
    expect(verifyChainAgainstPin(chain, spkiPin(ca.certPem), '127.0.0.1')).toContain('BEGIN CERTIFICATE');
    expect(codeOf(() => verifyChainAgainstPin(chain, spkiPin(foreign.certPem), 'localhost'))).toBe('CA_PIN_MISMATCH');
    expect(codeOf(() => verifyChainAgainstPin(chain, spkiPin(ca.certPem), 'rollcall.example.net'))).toBe('TLS_NAME_MISMATCH');
    const impostor = issueServerCert(foreign, { hosts: ['localhost'] });
    expect(codeOf(() => verifyChainAgainstPin([pemToDer(impostor.certPem), pemToDer(ca.certPem)], spkiPin(ca.certPem), 'localhost'))).toBe('TLS_UNTRUSTED');
    const old = issueServerCert(ca, { hosts: ['localhost'], now: new Date('2020-01-01'), validityDays: 30 });
    expect(codeOf(() => verifyChainAgainstPin([pemToDer(old.certPem), pemToDer(ca.certPem)], spkiPin(ca.certPem), 'localhost'))).toBe('TLS_EXPIRED');
    expect(codeOf(() => verifyChainAgainstPin([], spkiPin(ca.certPem), 'localhost'))).toBe('TLS_NO_CERTIFICATE');
  });
});

/** A CSR-shaped PEM carrying an EC key: node-forge cannot read EC keys, which must be refused cleanly. */
function buildEcCsrLikeDer(spkiDer: Buffer): string {
  const asn1 = forge.asn1;
  const spki = asn1.fromDer(forge.util.createBuffer(spkiDer.toString('binary')));
  const info = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, String.fromCharCode(0)),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, []),
    spki,
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, []),
  ]);
  const csr = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    info,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer('1.2.840.10045.4.3.2').getBytes())]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, String.fromCharCode(0) + 'sig'),
  ]);
  const b64 = forge.util.encode64(asn1.toDer(csr).getBytes()).replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}
