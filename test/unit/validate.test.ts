import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { VcstorError } from '../../common/errors.js';
import {
  isWithin,
  resolveConfinedPath,
  validateAddressOrCidr,
  validateChapSecret,
  validateHostPort,
  validateIqn,
  validateName,
  validateOptions,
  validatePathUnder,
  validateSize,
} from '../../common/validate.js';

function rejects(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VcstorError, 'a VcstorError');
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.match(err.message, pattern);
    return true;
  });
}

describe('validateName', () => {
  it('accepts plain names', () => {
    for (const name of ['vol0', 'a', 'guest-1.disk_2', '0abc', 'x'.repeat(63)]) assert.equal(validateName('name', name), name);
  });
  it('rejects shell metacharacters, paths, case and length', () => {
    const bad = ['vol;rm -rf /', 'a b', '$(id)', '`id`', 'a|b', 'a&b', 'a>b', "a'b", 'a"b', '../etc', 'a/b', '.hidden', '-rf', 'Vol', 'x'.repeat(64), 'a\nb', 'a\u0000b', 'é'];
    for (const name of bad) rejects(() => validateName('name', name), /^name: /);
  });
  it('says the field and that it is required', () => rejects(() => validateName('volume', ''), /^volume: is required/));
});

describe('validateSize', () => {
  it('accepts whole byte counts in range', () => {
    assert.equal(validateSize('size', 1), 1);
    assert.equal(validateSize('size', 2 ** 40), 2 ** 40);
  });
  it('rejects impossible sizes', () => {
    rejects(() => validateSize('size', 0), /too small/);
    rejects(() => validateSize('size', -4096), /too small/);
    rejects(() => validateSize('size', 1.5), /whole number/);
    rejects(() => validateSize('size', Number.NaN), /whole number/);
    rejects(() => validateSize('size', Number.POSITIVE_INFINITY), /whole number/);
    rejects(() => validateSize('size', 2 ** 60), /too large/);
    rejects(() => validateSize('size', 1000, { multipleOf: 512 }), /multiple of 512/);
    rejects(() => validateSize('size', 4096, { min: 1024 * 1024 }), /too small/);
  });
});

describe('validatePathUnder', () => {
  const roots = ['/srv/vcstor', '/var/lib/vcstor/images'];
  it('accepts normal paths under a root, and the root itself', () => {
    assert.equal(validatePathUnder('p', '/srv/vcstor/a/b.img', roots), '/srv/vcstor/a/b.img');
    assert.equal(validatePathUnder('p', '/var/lib/vcstor/images', roots), '/var/lib/vcstor/images');
  });
  it('rejects .. and . segments even when they would stay inside', () => {
    rejects(() => validatePathUnder('p', '/srv/vcstor/../../etc/shadow', roots), /'\.' or '\.\.' segments/);
    rejects(() => validatePathUnder('p', '/srv/vcstor/a/../b', roots), /'\.' or '\.\.' segments/);
    rejects(() => validatePathUnder('p', '/srv/vcstor/./b', roots), /'\.' or '\.\.' segments/);
  });
  it('rejects relative, outside, prefix-sharing and malformed paths', () => {
    rejects(() => validatePathUnder('p', 'srv/vcstor/a', roots), /not an absolute path/);
    rejects(() => validatePathUnder('p', '/etc/passwd', roots), /outside/);
    rejects(() => validatePathUnder('p', '/srv/vcstorX/a', roots), /outside/);
    rejects(() => validatePathUnder('p', '/srv/vcstor//a', roots), /empty segments/);
    rejects(() => validatePathUnder('p', '/srv/vcstor/a/', roots), /trailing slash/);
    rejects(() => validatePathUnder('p', '/srv/vcstor/a\nb', roots), /control characters/);
    rejects(() => validatePathUnder('p', '/srv/vcstor/a', []), /no directory is configured/);
  });
  it('isWithin treats a shared prefix as outside', () => {
    assert.equal(isWithin('/a/b', '/a/b/c'), true);
    assert.equal(isWithin('/a/b', '/a/bc'), false);
    assert.equal(isWithin('/a/b', '/a'), false);
  });
  it('resolveConfinedPath refuses a symbolic link that leads out of the root', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'vcstor-validate-'));
    try {
      await mkdir(path.join(root, 'inside'));
      await symlink('/etc', path.join(root, 'escape'));
      assert.equal(await resolveConfinedPath('p', path.join(root, 'inside', 'new.img'), [root]), path.join(root, 'inside', 'new.img'));
      await assert.rejects(resolveConfinedPath('p', path.join(root, 'escape', 'passwd'), [root]), /symbolic link/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('validateIqn', () => {
  it('accepts RFC 3720 names', () => {
    for (const iqn of ['iqn.2026-11.org.vcstor:vol0', 'iqn.1992-01.com.example', 'iqn.2001-04.com.example:storage:diskarrays-sn-a8675309', 'eui.02004567A425678D', 'naa.52004567BA64678D', 'iqn.2026-11.test:init.0']) {
      assert.equal(validateIqn('iqn', iqn), iqn);
    }
  });
  it('rejects bad IQNs', () => {
    rejects(() => validateIqn('iqn', 'iqn.2026-13.org.vcstor:v'), /month 13/);
    rejects(() => validateIqn('iqn', 'iqn.26-11.org.vcstor:v'), /not an iSCSI name/);
    rejects(() => validateIqn('iqn', 'iqn.2026-11.org.vcstor:v;reboot'), /not an iSCSI name/);
    rejects(() => validateIqn('iqn', 'iqn.2026-11.Org.Vcstor:V'), /lower case/);
    rejects(() => validateIqn('iqn', 'iqn.2026-11..org:v'), /not an iSCSI name/);
    rejects(() => validateIqn('iqn', 'eui.1234'), /not an iSCSI name/);
    rejects(() => validateIqn('iqn', 'vol0'), /not an iSCSI name/);
    rejects(() => validateIqn('iqn', `iqn.2026-11.org.vcstor:${'a'.repeat(220)}`), /223 bytes/);
    rejects(() => validateIqn('iqn', ''), /required/);
  });
});

describe('addresses, options and secrets', () => {
  it('parses host:port forms', () => {
    assert.deepEqual(validateHostPort('portal', '198.51.100.10:3260'), { host: '198.51.100.10', port: 3260 });
    assert.deepEqual(validateHostPort('portal', '[::1]:50051'), { host: '::1', port: 50051 });
    assert.deepEqual(validateHostPort('portal', 'storage0.lab', 3260), { host: 'storage0.lab', port: 3260 });
    rejects(() => validateHostPort('portal', 'host:99999'), /not a port/);
    rejects(() => validateHostPort('portal', 'a b:1'), /not an IP address or host name/);
    rejects(() => validateHostPort('portal', 'host'), /has no port/);
  });
  it('checks CIDRs', () => {
    assert.equal(validateAddressOrCidr('a', '198.51.100.0/24'), '198.51.100.0/24');
    assert.equal(validateAddressOrCidr('a', 'fd00::1'), 'fd00::1');
    rejects(() => validateAddressOrCidr('a', '198.51.100.0/33'), /not an IP/);
    rejects(() => validateAddressOrCidr('a', 'example.com'), /not an IP/);
  });
  it('allows only listed options', () => {
    assert.deepEqual(validateOptions('o', ['noatime', 'commit=30'], ['noatime', 'commit=']), ['noatime', 'commit=30']);
    rejects(() => validateOptions('o', ['exec'], ['noatime']), /^o\[0\]: "exec" is not an allowed option/);
    rejects(() => validateOptions('o', ['commit=1;reboot'], ['commit=']), /not an allowed option/);
    // A value must not carry more options with it: mount -o joins the list with commas.
    for (const smuggled of ['commit=30,exec', 'commit=30,suid', 'commit=30 exec', 'commit=a=b', 'commit=30:exec', 'commit=30\n']) {
      rejects(() => validateOptions('o', [smuggled], ['commit=']), /not an allowed option/);
    }
  });
  it('never echoes a CHAP secret', () => {
    assert.throws(() => validateChapSecret('chap.password', 'short secret'), (err: unknown) => {
      assert.ok(err instanceof VcstorError);
      assert.doesNotMatch(err.message, /short secret/);
      return true;
    });
    assert.equal(validateChapSecret('chap.password', 'secretpass12'), 'secretpass12');
  });
});
