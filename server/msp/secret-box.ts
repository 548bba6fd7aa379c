/**
 * Encrypts secrets the server must keep to act later (the MSP portal
 * password, for scheduled syncs) with AES-256-GCM under a key in the data
 * directory (`secret.key`, mode 0600). The database alone does not reveal
 * them. Format: `v1.<iv b64url>.<tag b64url>.<ciphertext b64url>`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { RollcallError } from '../../common/errors.js';

/** Seals and opens secrets with one key. */
export interface SecretBox {
  seal(plain: string): string;
  open(sealed: string): string;
}

/** Builds a box from a 32-byte key. */
export function secretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new RollcallError('SECRET_KEY_INVALID', 'the secret key must be 32 bytes');
  return {
    seal(plain) {
      const iv = crypto.randomBytes(12);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
      const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), data.toString('base64url')].join('.');
    },
    open(sealed) {
      const [v, iv, tag, data] = sealed.split('.');
      if (v !== 'v1' || !iv || !tag || data === undefined) throw new RollcallError('SECRET_UNREADABLE', 'a stored secret has an unknown format');
      try {
        const decipher = crypto.createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
      } catch (err) {
        throw new RollcallError('SECRET_UNREADABLE', 'a stored secret cannot be decrypted (was secret.key replaced?)', { cause: err });
      }
    },
  };
}

/** Loads the key file, creating it (mode 0600) on first use. */
export async function loadSecretBox(file: string): Promise<SecretBox> {
  try {
    return secretBox(await fs.readFile(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = crypto.randomBytes(32);
  await fs.writeFile(file, key, { mode: 0o600, flag: 'wx' });
  return secretBox(key);
}
