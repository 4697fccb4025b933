import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecordingCommandRunner } from '../support/runner-recording.js';
import { planHosts, tgtControlPort, validateLabOptions, DEFAULT_LAB } from '../../lab/lab.js';
import { cidrOverlap, LabNetwork } from '../../lab/network.js';

describe('lab network', () => {
  it('detects overlapping IPv4 ranges', () => {
    assert.equal(cidrOverlap('192.0.2.0/24', '192.0.2.0/24'), true);
    assert.equal(cidrOverlap('192.0.0.0/16', '192.0.2.0/24'), true);
    assert.equal(cidrOverlap('192.0.2.7', '192.0.2.0/24'), true);
    assert.equal(cidrOverlap('198.51.100.0/24', '192.0.2.0/24'), false);
    assert.equal(cidrOverlap('fd00::/64', '192.0.2.0/24'), false);
  });

  it('refuses a subnet the machine already routes', async () => {
    const runner = new RecordingCommandRunner().on('ip', ['-j', 'route', 'show'], {
      stdout: JSON.stringify([{ dst: 'default', gateway: '192.0.2.1', dev: 'eth0' }, { dst: '192.0.2.0/24', dev: 'eth0' }, { dst: '198.51.100.0/24', dev: 'vcs-c' }]),
    });
    const network = new LabNetwork(runner);
    assert.deepEqual(await network.overlappingRoutes('192.0.2.0/24', 'vcs-c'), ['192.0.2.0/24 on eth0']);
    assert.deepEqual(await network.overlappingRoutes('198.51.100.0/24', 'vcs-c'), [], 'its own link does not count');
  });

  it('makes a host link only when missing (converges)', async () => {
    const runner = new RecordingCommandRunner()
      .on('ip', ['-n', 'vcs-sw', 'link', 'show', 'dev', 'guest0'], { exitCode: 1 })
      .on('ip', ['-n', 'vcs-guest0', 'link', 'show', 'dev', 'eth0'], { exitCode: 1 })
      .on('ip', ['-n', 'vcs-guest0', '-j', 'addr', 'show', 'dev', 'eth0'], { stdout: '[{"addr_info":[]}]' })
      .when((cmd) => cmd === 'ip', {});
    await new LabNetwork(runner).ensureHostLink({ switchNamespace: 'vcs-sw', bridge: 'br0', switchEnd: 'guest0', hostNamespace: 'vcs-guest0', hostEnd: 'eth0', address: '198.51.100.100/24' });
    assert.deepEqual(runner.lines, [
      'ip -n vcs-sw link show dev guest0',
      'ip -n vcs-guest0 link show dev eth0',
      'ip -n vcs-sw link add guest0 type veth peer name eth0 netns vcs-guest0',
      'ip -n vcs-sw link set guest0 master br0 up',
      'ip -n vcs-guest0 -j addr show dev eth0',
      'ip -n vcs-guest0 addr add 198.51.100.100/24 dev eth0',
      'ip -n vcs-guest0 link set eth0 up',
    ]);

    const again = new RecordingCommandRunner()
      .on('ip', ['-n', 'vcs-guest0', '-j', 'addr', 'show', 'dev', 'eth0'], { stdout: '[{"addr_info":[{"local":"198.51.100.100","prefixlen":24}]}]' })
      .when((cmd) => cmd === 'ip', {});
    await new LabNetwork(again).ensureHostLink({ switchNamespace: 'vcs-sw', bridge: 'br0', switchEnd: 'guest0', hostNamespace: 'vcs-guest0', hostEnd: 'eth0', address: '198.51.100.100/24' });
    assert.equal(again.lines.filter((l) => / add /.test(l)).length, 0, 'nothing is added twice');
  });

  it('plans hosts, addresses and interface names that fit', () => {
    const hosts = planHosts({ ...DEFAULT_LAB, dom0: 2, guests: 3 });
    assert.deepEqual(hosts.map((h) => `${h.name}@${h.address}`), ['storage0@198.51.100.10', 'host0@198.51.100.20', 'host1@198.51.100.21', 'guest0@198.51.100.100', 'guest1@198.51.100.101', 'guest2@198.51.100.102']);
    assert.ok(hosts.every((h) => h.namespace.startsWith('vcs-')));
    assert.notEqual(tgtControlPort('vcs'), tgtControlPort('vct'));
    assert.throws(() => validateLabOptions({ ...DEFAULT_LAB, name: 'toolongname' }), /1-6 characters/);
    assert.throws(() => validateLabOptions({ ...DEFAULT_LAB, subnet: '10.0.0.0/8' }), /give a \/24/);
    assert.throws(() => validateLabOptions({ ...DEFAULT_LAB, guests: 151 }), /guests: 151/);
    assert.throws(() => validateLabOptions({ ...DEFAULT_LAB, rate: '1gbit; reboot' }), /tc rate/);
  });
});
