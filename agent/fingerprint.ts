/**
 * The hardware fingerprint reported in `hello`: a SHA-256 over facts that
 * survive a reinstall but differ between machines (machine id, DMI product
 * UUID where readable, MAC addresses, CPU model and count, total memory).
 * A cloned disk keeps the machine id but usually not the MACs or DMI UUID,
 * so a clone shows up as the same certificate with another fingerprint.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';

function readOptional(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EACCES') return '';
    throw err;
  }
}

/** Computes the fingerprint; `salt` is a seam for tests that simulate another machine. */
export function hardwareFingerprint(salt = ''): string {
  const macs = Object.values(os.networkInterfaces())
    .flat()
    .filter((i): i is os.NetworkInterfaceInfo => !!i && !i.internal && i.mac !== '00:00:00:00:00:00')
    .map((i) => i.mac)
    .sort();
  const facts = [
    readOptional('/etc/machine-id'),
    readOptional('/sys/class/dmi/id/product_uuid'),
    [...new Set(macs)].join(','),
    os.cpus()[0]?.model ?? '',
    String(os.cpus().length),
    String(os.totalmem()),
    salt,
  ];
  return crypto.createHash('sha256').update(facts.join('\n')).digest('hex');
}
