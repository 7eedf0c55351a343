/**
 * The ssh cipher for `--via-ssh`, where every byte of the transfer goes through ssh's
 * own encryption (the frames travel without ferry's records inside it: plain-records.ts).
 *
 * OpenSSH offers chacha20-poly1305@openssh.com first. Its Poly1305 is OpenSSH's own
 * portable C, while aes128-gcm@openssh.com runs in OpenSSL with the CPU's AES and
 * carry-less multiply instructions: on a CPU with AES-NI the GCM cipher costs both ssh
 * ends much less CPU per byte. Both are authenticated ciphers of the default list, so
 * moving one ahead of the other lowers no protection.
 *
 * ferry moves it ahead only when the user has not chosen: the rsh command is plain
 * `ssh` (not a wrapper), and the cipher list ssh would use for this destination
 * (`ssh ... -G DEST`: the command's own options, the user's and the system's config)
 * is exactly OpenSSH's built-in default (`ssh -F /dev/null -G DEST`). Any choice the
 * user made — `-c`, `-o Ciphers=`, a Ciphers line in any config — leaves the list as
 * it is. The new list is the same ciphers, aes128-gcm@openssh.com first, given as
 * `-c LIST`; a server that refuses it negotiates the next one as before.
 * `FERRY_SSH_CIPHER=keep` turns this off.
 *
 * The two `ssh -G` runs start together and only parse configuration (no connection);
 * their answer is kept for the process, so the early start of ssh (ssh-spawn.ts, from
 * the CLI) and modes/ssh.ts ask once and agree on the argv.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

export const PREFERRED_CIPHER = 'aes128-gcm@openssh.com';

const cache = new Map<string, Promise<string[]>>();

/** Does this CPU have AES instructions (Linux: the "aes" flag of /proc/cpuinfo)? */
export function cpuHasAes(cpuinfo?: string): boolean {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'latin1');
    } catch {
      return false;
    }
  }
  return /^(flags|Features)\s*:.*\baes\b/m.test(text);
}

/** The `ciphers` line of `ssh -G` output, or undefined. */
export function ciphersOf(g: string): string[] | undefined {
  const m = /^ciphers (\S+)$/m.exec(g);
  return m ? m[1]!.split(',') : undefined;
}

/**
 * The list to ask for, given the effective and the built-in default lists: the same
 * ciphers with PREFERRED_CIPHER first, or undefined when the user chose (the lists
 * differ), it is first already, or it is not in the list.
 */
export function preferredCiphers(effective: readonly string[] | undefined, builtin: readonly string[] | undefined): string[] | undefined {
  if (effective === undefined || builtin === undefined) return undefined;
  if (effective.length !== builtin.length || effective.some((c, i) => c !== builtin[i])) return undefined;
  if (effective[0] === PREFERRED_CIPHER || !effective.includes(PREFERRED_CIPHER)) return undefined;
  return [PREFERRED_CIPHER, ...effective.filter((c) => c !== PREFERRED_CIPHER)];
}

function sshG(argv: readonly string[]): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    let child;
    try {
      child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      resolve('');
      return;
    }
    const t = setTimeout(() => child.kill(), 5000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => (out += s));
    child.once('error', () => resolve(''));
    child.once('close', (code) => {
      clearTimeout(t);
      resolve(code === 0 ? out : '');
    });
  });
}

/**
 * Extra ssh options for a --via-ssh session to `destination` with the rsh command `rsh`:
 * `['-c', LIST]` when ferry may put PREFERRED_CIPHER first (see above), else none.
 */
export function viaSshCipherArgs(rsh: readonly string[], destination: string): Promise<string[]> {
  const key = JSON.stringify([rsh, destination]);
  let p = cache.get(key);
  if (p === undefined) {
    p = decide(rsh, destination);
    cache.set(key, p);
  }
  return p;
}

async function decide(rsh: readonly string[], destination: string): Promise<string[]> {
  if (process.env['FERRY_SSH_CIPHER'] === 'keep') return [];
  if (basename(rsh[0] ?? '') !== 'ssh' || !cpuHasAes()) return [];
  const [effective, builtin] = await Promise.all([sshG([...rsh, '-G', destination]), sshG([rsh[0]!, '-F', '/dev/null', '-G', destination])]);
  const list = preferredCiphers(ciphersOf(effective), ciphersOf(builtin));
  return list ? ['-c', list.join(',')] : [];
}
