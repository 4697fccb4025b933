import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import {
  XenHypervisor,
  parseXlBlockList,
  parseXlList,
  renderDiskSpec,
  renderVifSpec,
  renderXlConfig,
  vbdDeviceNumber,
} from '../../agent-dom0/drivers/xen.js';
import { VcstorError } from '../../common/errors.js';
import type { DomainDisk, DomainSpec } from '../../agent-dom0/hypervisor.js';
import { CommandError, ExecaCommandRunner, type CommandResult, type CommandRunner, type RunOptions } from '../../common/runner.js';
import { RecordingCommandRunner } from '../support/runner-recording.js';

const signal = new AbortController().signal;

const BY_PATH_LUN = '/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-iqn.2026-11.test:vol0-lun-1';

/** PV guest booted from a dom0 kernel: two iSCSI LUNs as phy disks, one read-only. */
const pvKernelSpec: DomainSpec = {
  name: 'vm1',
  memoryMib: 512,
  vcpus: 2,
  type: 'pv',
  kernel: { kernel: '/boot/vmlinuz-6.1.0-18-amd64', ramdisk: '/boot/initrd.img-6.1.0-18-amd64', cmdline: 'root=/dev/xvda ro console=hvc0' },
  vifs: [{ bridge: 'xenbr0', mac: '00:16:3E:12:34:56', ip: '192.0.2.21' }],
  disks: [
    { target: '/dev/sdb', kind: 'phy', vdev: 'xvda', readOnly: false },
    { target: BY_PATH_LUN, kind: 'phy', vdev: 'xvdb', readOnly: true },
  ],
};
const PV_KERNEL_CONFIG = `name = "vm1"
type = "pv"
memory = 512
vcpus = 2
kernel = "/boot/vmlinuz-6.1.0-18-amd64"
ramdisk = "/boot/initrd.img-6.1.0-18-amd64"
cmdline = "root=/dev/xvda ro console=hvc0"
vif = [ 'bridge=xenbr0,mac=00:16:3e:12:34:56,ip=192.0.2.21' ]
disk = [ 'format=raw, vdev=xvda, access=rw, backendtype=phy, target=/dev/sdb', 'format=raw, vdev=xvdb, access=ro, backendtype=phy, target=${BY_PATH_LUN}' ]
`;

/** PV guest with pygrub and image files: loop-backed (file), QEMU-backed (tap-aio), read-only. */
const pvImagesSpec: DomainSpec = {
  name: 'node-2',
  memoryMib: 1024,
  vcpus: 1,
  type: 'pv',
  bootloader: 'pygrub',
  vifs: [
    { bridge: 'xenbr0', mac: '', ip: '' },
    { bridge: 'br-storage', mac: '', ip: '10.0.0.12' },
  ],
  disks: [
    { target: '/srv/vcstor/images/node-2-root.img', kind: 'file', vdev: 'xvda', readOnly: false },
    { target: '/srv/vcstor/images/shared data,v2.img', kind: 'tap-aio', vdev: 'xvdb', readOnly: false },
    { target: '/srv/vcstor/images/tools.iso', kind: 'file', vdev: 'xvdc', readOnly: true },
  ],
};
const PV_IMAGES_CONFIG = `name = "node-2"
type = "pv"
memory = 1024
vcpus = 1
bootloader = "pygrub"
vif = [ 'bridge=xenbr0', 'bridge=br-storage,ip=10.0.0.12' ]
disk = [ 'format=raw, vdev=xvda, access=rw, backendtype=phy, target=/srv/vcstor/images/node-2-root.img', 'format=raw, vdev=xvdb, access=rw, backendtype=qdisk, target=/srv/vcstor/images/shared data,v2.img', 'format=raw, vdev=xvdc, access=ro, backendtype=phy, target=/srv/vcstor/images/tools.iso' ]
`;

/** HVM guest: firmware boot, an emulated-IDE-named disk on a loop device, a read-only tap-aio image. */
const hvmSpec: DomainSpec = {
  name: 'win-1',
  memoryMib: 2048,
  vcpus: 2,
  type: 'hvm',
  vifs: [{ bridge: 'xenbr0', mac: '00:16:3e:00:00:01', ip: '' }],
  disks: [
    { target: '/dev/loop3', kind: 'phy', vdev: 'hda', readOnly: false },
    { target: '/srv/vcstor/images/drivers.img', kind: 'tap-aio', vdev: 'hdb', readOnly: true },
  ],
};
const HVM_CONFIG = `name = "win-1"
type = "hvm"
memory = 2048
vcpus = 2
vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:01' ]
disk = [ 'format=raw, vdev=hda, access=rw, backendtype=phy, target=/dev/loop3', 'format=raw, vdev=hdb, access=ro, backendtype=qdisk, target=/srv/vcstor/images/drivers.img' ]
`;

/** PVH guest with a bare kernel, no network and no disks. */
const pvhSpec: DomainSpec = {
  name: 'tiny',
  memoryMib: 64,
  vcpus: 1,
  type: 'pvh',
  kernel: { kernel: '/var/lib/vcstor/kernels/bzImage', ramdisk: '', cmdline: '' },
  vifs: [],
  disks: [],
};
const PVH_CONFIG = `name = "tiny"
type = "pvh"
memory = 64
vcpus = 1
kernel = "/var/lib/vcstor/kernels/bzImage"
`;

const ALL_SPECS: ReadonlyArray<[string, DomainSpec]> = [
  ['pv-kernel', pvKernelSpec],
  ['pv-images', pvImagesSpec],
  ['hvm', hvmSpec],
  ['pvh', pvhSpec],
];

/*
 * `xl list` outputs. xl prints each row with printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f")
 * after the header "Name <spaces> ID   Mem VCPUs\tState\tTime(s)" (list_domains in
 * tools/xl/xl_info.c).
 */
const XL_LIST_HEADER = 'Name                                        ID   Mem VCPUs\tState\tTime(s)';

/** Seen on a real host (FreeBSD on Xen/ARM thread on xen-devel): one guest running. */
const XL_LIST_REAL_RUNNING = `${XL_LIST_HEADER}
Domain-0                                     0   768     2     r-----    1439.4
freebsd                                      1  1152     1     r-----       3.0
`;

/** Seen on a real host (Zephyr as a Xen guest on arm64): an idle guest is blocked. */
const XL_LIST_REAL_BLOCKED = `${XL_LIST_HEADER}
Domain-0                                     0  1024     4     r-----       7.0
zephyr                                       3   512     1     -b----       1.1
`;

/** A row exactly as xl prints it, for the states no pasted sample shows. */
function xlListRow(name: string, id: number, memoryMib: number, vcpus: number, flags: string, seconds: number): string {
  return `${name.padEnd(40)} ${String(id).padStart(5)} ${String(memoryMib).padStart(5)} ${String(vcpus).padStart(5)}     ${flags}  ${seconds.toFixed(1).padStart(8)}`;
}

const XL_LIST_EVERY_STATE = [
  XL_LIST_HEADER,
  xlListRow('Domain-0', 0, 4096, 4, 'r-----', 812.3),
  xlListRow('vm-running', 1, 512, 2, 'r-----', 12.5),
  xlListRow('vm-blocked', 2, 512, 1, '-b----', 3.1),
  xlListRow('vm-paused', 3, 256, 1, '--p---', 0.4),
  xlListRow('vm-shutdown', 4, 256, 1, '---s--', 9.9),
  xlListRow('vm-crashed', 5, 256, 1, '---sc-', 2.0),
  xlListRow('vm-dying', 6, 128, 1, '-----d', 1.0),
  xlListRow('vm-waiting-for-a-cpu', 7, 1024, 8, '------', 100.0),
  xlListRow('a-domain-name-longer-than-forty-characters-x', 8, 64, 1, '-b----', 0.1),
  '',
].join('\n');

/*
 * `xl block-list` outputs. The header is printf("%-5s %-3s %-6s %-5s %-6s %-8s %-30s\n")
 * (main_blocklist in tools/xl/xl_block.c), hence the trailing blanks.
 */
const XL_BLOCK_LIST_HEADER = 'Vdev  BE  handle state evt-ch ring-ref BE-path                       ';

/**
 * Seen on a real host (Qubes dom0, xen-devel "xen-blkfront crash on xl block-detach of
 * not fully attached device"): xvda-xvdd connected from dom0, xvdi (after
 * `xl block-attach work backend=sys-usb vdev=xvdi target=/dev/sdz`) initialised only.
 */
const XL_BLOCK_LIST_REAL_QUBES = `${XL_BLOCK_LIST_HEADER}
51712 0   241    4     -1     -1       /local/domain/0/backend/vbd/241/51712
51728 0   241    4     -1     -1       /local/domain/0/backend/vbd/241/51728
51744 0   241    4     -1     -1       /local/domain/0/backend/vbd/241/51744
51760 0   241    4     -1     -1       /local/domain/0/backend/vbd/241/51760
51840 3   241    3     -1     -1       /local/domain/3/backend/vbd/241/51840
`;

/** Seen on a real host (a Chinese xl tutorial): blkback xvda plus a QEMU (qdisk) xvdb. */
const XL_BLOCK_LIST_REAL_QDISK = `${XL_BLOCK_LIST_HEADER}
51712 0   10     4     13     8        /local/domain/0/backend/vbd/10/51712
51728 0   10     3     15     1281     /local/domain/0/backend/qdisk/10/51728
`;

const XL_BLOCK_LIST_EMPTY = `${XL_BLOCK_LIST_HEADER}\n`;

/** xl's message for a name no domain has (libxl_name_to_domid returns ERROR_INVAL, -6). */
const noSuchDomain = (name: string) => `${name} is an invalid domain identifier (rc=-6)\n`;

/**
 * What `xl -N create` printed for a config like PV_KERNEL_CONFIG (Xen 4.17, captured
 * with the shim in test/tools): the libxl domain config itself, as JSON on stdout.
 */
function dryRunJson(disks: Array<{ pdev: string; vdev: string; backend: string; rw: boolean }>, kernel: string, ramdisk: string): string {
  return JSON.stringify(
    {
      c_info: { type: 'pv', name: 'vm1', uuid: '7f4d90ff-6a11-4e56-9d1c-b4607010d71b', run_hotplug_scripts: 'True' },
      b_info: {
        max_vcpus: 2,
        avail_vcpus: [0, 1],
        max_memkb: 524288,
        target_memkb: 524288,
        sched_params: {},
        claim_mode: 'True',
        kernel,
        cmdline: 'root=/dev/xvda ro console=hvc0',
        ramdisk,
        'type.pv': {},
        arch_arm: {},
        arch_x86: {},
      },
      disks: disks.map((disk) => ({ pdev_path: disk.pdev, vdev: disk.vdev, backend: disk.backend, format: 'raw', ...(disk.rw ? { readwrite: 1 } : {}) })),
      nics: [{ devid: 0, mac: '00:16:3e:12:34:56', ip: '192.0.2.21', bridge: 'xenbr0' }],
      on_reboot: 'restart',
      on_soft_reset: 'soft_reset',
    },
    null,
    4,
  );
}

/** `xl list -l NAME`: an array of {domid, config} with the config as in dryRunJson. */
function listLongJson(domid: number, disks: Array<{ pdev: string; vdev: string; backend: string; rw: boolean }>): string {
  return JSON.stringify([{ domid, config: JSON.parse(dryRunJson(disks, '/boot/vmlinuz', '')) as unknown }], null, 4);
}

function assertVcstorError(code: string, pattern: RegExp): (err: unknown) => true {
  return (err: unknown) => {
    assert.ok(err instanceof VcstorError, `a VcstorError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

function withChanges(base: DomainSpec, change: (spec: DomainSpec) => void): DomainSpec {
  const copy = structuredClone(base);
  change(copy);
  return copy;
}

describe('renderXlConfig', () => {
  it('writes a PV guest booted from a dom0 kernel, with ramdisk, cmdline, a full vif and phy disks (device and by-path name, one read-only)', () => {
    assert.equal(renderXlConfig(pvKernelSpec), PV_KERNEL_CONFIG);
  });

  it('writes a PV guest with pygrub, vifs without MAC, and file, tap-aio and read-only file images', () => {
    assert.equal(renderXlConfig(pvImagesSpec), PV_IMAGES_CONFIG);
  });

  it('writes an HVM guest without kernel or bootloader', () => {
    assert.equal(renderXlConfig(hvmSpec), HVM_CONFIG);
  });

  it('writes a PVH guest with a bare kernel and leaves out ramdisk, cmdline, vif and disk when there are none', () => {
    assert.equal(renderXlConfig(pvhSpec), PVH_CONFIG);
  });

  it('is pure: the same spec gives the same text, and the driver method gives what the function gives', () => {
    const driver = new XenHypervisor({ runner: new RecordingCommandRunner() });
    for (const [, spec] of ALL_SPECS) {
      assert.equal(driver.renderConfig(structuredClone(spec)), renderXlConfig(spec));
    }
  });

  it('treats empty bootloader and kernel strings (proto3 defaults) as absent', () => {
    const spec = withChanges(hvmSpec, (s) => {
      s.bootloader = '';
      s.kernel = { kernel: '', ramdisk: '', cmdline: '' };
    });
    assert.equal(renderXlConfig(spec), HVM_CONFIG);
  });

  it('writes an all-empty vif as an empty spec (xl gives it the default bridge and a random MAC)', () => {
    const spec = withChanges(pvhSpec, (s) => {
      s.vifs = [{ bridge: '', mac: '', ip: '' }];
    });
    assert.equal(renderXlConfig(spec), `${PVH_CONFIG}vif = [ '' ]\n`);
  });

  const refusals: ReadonlyArray<[string, DomainSpec, RegExp]> = [
    ['a single quote in a disk target', withChanges(pvImagesSpec, (s) => { s.disks[0]!.target = "/srv/it's.img"; }), /^disks\[0\]\.target: .*quote/],
    ['a double quote in the cmdline', withChanges(pvKernelSpec, (s) => { s.kernel!.cmdline = 'console="hvc0"'; }), /^kernel\.cmdline: .*quote/],
    ['a newline in the cmdline', withChanges(pvKernelSpec, (s) => { s.kernel!.cmdline = 'ro\nmemory = 99999'; }), /^kernel\.cmdline: .*control character/],
    ['a backslash in the kernel path', withChanges(pvKernelSpec, (s) => { s.kernel!.kernel = '/boot/a\\b'; }), /^kernel\.kernel: .*backslash/],
    ['a tab in a target', withChanges(pvKernelSpec, (s) => { s.disks[0]!.target = '/dev/sd\tb'; }), /^disks\[0\]\.target: .*control character/],
    ['a target ending with a comma (xl would strip it)', withChanges(pvImagesSpec, (s) => { s.disks[1]!.target = '/srv/vcstor/images/a,'; }), /^disks\[1\]\.target: ends with a comma/],
    ['a relative target', withChanges(pvImagesSpec, (s) => { s.disks[0]!.target = 'images/a.img'; }), /^disks\[0\]\.target: .*not an absolute path/],
    ['a target with ..', withChanges(pvKernelSpec, (s) => { s.disks[0]!.target = '/dev/../etc/shadow'; }), /^disks\[0\]\.target: .*normal form/],
    ['a phy target outside /dev', withChanges(pvKernelSpec, (s) => { s.disks[0]!.target = '/srv/a.img'; }), /^disks\[0\]\.target: .*not under \/dev/],
    ['an image target under /dev', withChanges(pvImagesSpec, (s) => { s.disks[0]!.target = '/dev/sdc'; }), /^disks\[0\]\.target: .*under \/dev/],
    ['a vdev with partition 0', withChanges(pvKernelSpec, (s) => { s.disks[0]!.vdev = 'xvda0'; }), /^vdev: "xvda0" is not a virtual disk name/],
    ['a virtio vdev name', withChanges(pvKernelSpec, (s) => { s.disks[0]!.vdev = 'vda'; }), /^vdev: "vda"/],
    ['an hd disk past hdd', withChanges(hvmSpec, (s) => { s.disks[0]!.vdev = 'hde'; }), /^vdev: hde is out of range/],
    ['the same vdev twice', withChanges(pvKernelSpec, (s) => { s.disks[1]!.vdev = 'xvda'; }), /^disks\[1\]\.vdev: xvda is the same virtual disk as xvda/],
    ['a multicast MAC', withChanges(pvKernelSpec, (s) => { s.vifs[0]!.mac = '01:16:3e:12:34:56'; }), /^vifs\[0\]\.mac: .*multicast/],
    ['a malformed MAC', withChanges(pvKernelSpec, (s) => { s.vifs[0]!.mac = '00:16:3e:12:34'; }), /^vifs\[0\]\.mac: .*not a MAC address/],
    ['a bridge name with a comma', withChanges(pvKernelSpec, (s) => { s.vifs[0]!.bridge = 'br0,script=/tmp/x'; }), /^vifs\[0\]\.bridge: /],
    ['a bridge name over 15 characters', withChanges(pvKernelSpec, (s) => { s.vifs[0]!.bridge = 'a-very-long-bridge'; }), /^vifs\[0\]\.bridge: /],
    ['an ip that is not an address', withChanges(pvKernelSpec, (s) => { s.vifs[0]!.ip = '192.0.2.21,mac=00:00:00:00:00:01'; }), /^vifs\[0\]\.ip: /],
    ['an all-digit name (xl reads it as a domain id)', withChanges(pvKernelSpec, (s) => { s.name = '123'; }), /^name: 123 is all digits/],
    ['a name with a quote', withChanges(pvKernelSpec, (s) => { s.name = 'vm"1'; }), /^name: .*not a valid name/],
    ['both kernel and bootloader', withChanges(pvKernelSpec, (s) => { s.bootloader = 'pygrub'; }), /^bootloader: give either a kernel or a bootloader/],
    ['a PV guest with neither', withChanges(pvImagesSpec, (s) => { delete s.bootloader; }), /^kernel: a pv guest needs a kernel or a bootloader/],
    ['a bootloader for an HVM guest', withChanges(hvmSpec, (s) => { s.bootloader = 'pygrub'; }), /^bootloader: HVM guests/],
    ['a bootloader path with ..', withChanges(pvImagesSpec, (s) => { s.bootloader = '/usr/lib/../../tmp/x'; }), /^bootloader: /],
    ['a ramdisk without a kernel', withChanges(pvhSpec, (s) => { s.kernel = { kernel: '', ramdisk: '/boot/initrd', cmdline: '' }; }), /^kernel\.kernel: is required/],
    ['a cmdline over 1023 bytes', withChanges(pvKernelSpec, (s) => { s.kernel!.cmdline = 'x'.repeat(1024); }), /^kernel\.cmdline: is longer than 1023 bytes/],
    ['zero memory', withChanges(pvKernelSpec, (s) => { s.memoryMib = 0; }), /^memoryMib: /],
    ['a fractional vcpu count', withChanges(pvKernelSpec, (s) => { s.vcpus = 1.5; }), /^vcpus: /],
  ];
  for (const [what, spec, pattern] of refusals) {
    it(`refuses ${what} (INVALID_ARGUMENT naming the field)`, () => {
      assert.throws(() => renderXlConfig(spec), assertVcstorError('INVALID_ARGUMENT', pattern));
    });
  }
});

describe('renderDiskSpec and renderVifSpec', () => {
  it('maps phy and file to blkback (backendtype=phy) and tap-aio to QEMU (backendtype=qdisk), target last', () => {
    const disk = (kind: DomainDisk['kind'], target: string, readOnly = false): DomainDisk => ({ kind, target, vdev: 'xvdf', readOnly });
    assert.equal(renderDiskSpec(disk('phy', '/dev/sdb')), 'format=raw, vdev=xvdf, access=rw, backendtype=phy, target=/dev/sdb');
    assert.equal(renderDiskSpec(disk('file', '/srv/a.img')), 'format=raw, vdev=xvdf, access=rw, backendtype=phy, target=/srv/a.img');
    assert.equal(renderDiskSpec(disk('tap-aio', '/srv/a.img')), 'format=raw, vdev=xvdf, access=rw, backendtype=qdisk, target=/srv/a.img');
    assert.equal(renderDiskSpec(disk('phy', BY_PATH_LUN, true)), `format=raw, vdev=xvdf, access=ro, backendtype=phy, target=${BY_PATH_LUN}`);
  });

  it('lower-cases the MAC and leaves out empty keys', () => {
    assert.equal(renderVifSpec({ bridge: '', mac: 'AA:16:3E:00:00:0F', ip: '' }), 'mac=aa:16:3e:00:00:0f');
    assert.equal(renderVifSpec({ bridge: '', mac: '', ip: '2001:db8::21' }), 'ip=2001:db8::21');
  });
});

describe('vbdDeviceNumber', () => {
  const cases: ReadonlyArray<[string, number]> = [
    ['xvda', 51712], // 202 << 8
    ['xvdb', 51728], // 202 << 8 | 1 << 4
    ['xvdb1', 51729],
    ['xvda15', 51727],
    ['xvdi', 51840], // the vdev=xvdi of the Qubes block-list sample
    ['xvdp', 51952], // disk 15, the last in the 202 << 8 form
    ['xvdq', 268439552], // 1 << 28 | 16 << 8
    ['xvda16', 268435472], // partition 16 needs the extended form too
    ['xvdaa', 268442112], // disk 26: letters count like spreadsheet columns
    ['sda', 2048], // 8 << 8
    ['sdb2', 2066],
    ['hda', 768], // 3 << 8
    ['hdb', 832], // 3 << 8 | 1 << 6
    ['hdc', 5632], // 22 << 8
    ['hdd1', 5697],
  ];
  for (const [vdev, number] of cases) {
    it(`${vdev} is ${number}`, () => {
      assert.equal(vbdDeviceNumber(vdev), number);
    });
  }

  for (const vdev of ['xvd', 'xvda0', 'xvda01', 'sdq', 'sda16', 'hda64', 'xvdA', 'd0p0', '51712', 'xvda256']) {
    it(`refuses ${vdev}`, () => {
      assert.throws(() => vbdDeviceNumber(vdev), assertVcstorError('INVALID_ARGUMENT', /^vdev: /));
    });
  }
});

describe('parseXlList', () => {
  it('reads real outputs: name, id, memory, vcpus and state', () => {
    assert.deepEqual(parseXlList(XL_LIST_REAL_RUNNING), [
      { name: 'Domain-0', id: 0, state: 'running', memoryMib: 768, vcpus: 2 },
      { name: 'freebsd', id: 1, state: 'running', memoryMib: 1152, vcpus: 1 },
    ]);
    assert.deepEqual(parseXlList(XL_LIST_REAL_BLOCKED)[1], { name: 'zephyr', id: 3, state: 'blocked', memoryMib: 512, vcpus: 1 });
  });

  it('maps every state flag, and reads a name longer than its column', () => {
    const states = parseXlList(XL_LIST_EVERY_STATE).map((domain) => [domain.name, domain.state, domain.id]);
    assert.deepEqual(states, [
      ['Domain-0', 'running', 0],
      ['vm-running', 'running', 1],
      ['vm-blocked', 'blocked', 2],
      ['vm-paused', 'paused', 3],
      ['vm-shutdown', 'shutdown', 4],
      ['vm-crashed', 'crashed', 5],
      ['vm-dying', 'dying', 6],
      ['vm-waiting-for-a-cpu', 'running', 7],
      ['a-domain-name-longer-than-forty-characters-x', 'blocked', 8],
    ]);
  });

  it('fails loudly on a line it does not understand', () => {
    assert.throws(() => parseXlList(`${XL_LIST_HEADER}\nlibxl: error: something\n`), assertVcstorError('INTERNAL', /unexpected line in xl list output/));
  });
});

describe('parseXlBlockList', () => {
  it('reads a real output with unconnected devices (-1 event channels) and a backend other than dom0', () => {
    const devices = parseXlBlockList(XL_BLOCK_LIST_REAL_QUBES);
    assert.deepEqual(
      devices.map((d) => d.deviceNumber),
      ['xvda', 'xvdb', 'xvdc', 'xvdd', 'xvdi'].map(vbdDeviceNumber),
    );
    assert.deepEqual(devices[4], { deviceNumber: 51840, backendDomid: 3, frontendDomid: 241, state: 3, backendPath: '/local/domain/3/backend/vbd/241/51840' });
  });

  it('reads a real output with a QEMU (qdisk) backend', () => {
    assert.deepEqual(parseXlBlockList(XL_BLOCK_LIST_REAL_QDISK), [
      { deviceNumber: 51712, backendDomid: 0, frontendDomid: 10, state: 4, backendPath: '/local/domain/0/backend/vbd/10/51712' },
      { deviceNumber: 51728, backendDomid: 0, frontendDomid: 10, state: 3, backendPath: '/local/domain/0/backend/qdisk/10/51728' },
    ]);
  });

  it('gives nothing for a domain without disks, and fails loudly on a line it does not understand', () => {
    assert.deepEqual(parseXlBlockList(XL_BLOCK_LIST_EMPTY), []);
    assert.throws(() => parseXlBlockList(`${XL_BLOCK_LIST_HEADER}\nxvda 0 1 4\n`), assertVcstorError('INTERNAL', /unexpected line in xl block-list/));
  });
});

describe('XenHypervisor commands', () => {
  const CONFIG = '/var/lib/vcstor/domains/vm1.cfg';
  const listOf = (flags: string) => `${XL_LIST_HEADER}\n${xlListRow('vm1', 7, 512, 2, flags, 1.5)}\n`;

  it('start runs xl create when xl list does not know the domain', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], { exitCode: 1, stderr: noSuchDomain('vm1') })
      .on('xl', ['create', CONFIG], { stderr: `Parsing config from ${CONFIG}\n` });
    assert.equal(await new XenHypervisor({ runner }).start('vm1', CONFIG, signal), true);
    assert.deepEqual(runner.lines, ['xl list vm1', `xl create ${CONFIG}`]);
  });

  it('start of a running, blocked or paused domain runs no create (false)', async () => {
    for (const flags of ['r-----', '-b----', '--p---']) {
      const runner = new RecordingCommandRunner().on('xl', ['list', 'vm1'], { stdout: listOf(flags) });
      assert.equal(await new XenHypervisor({ runner }).start('vm1', CONFIG, signal), false);
      assert.deepEqual(runner.lines, ['xl list vm1']);
    }
  });

  it('start uses the configured xl program', async () => {
    const runner = new RecordingCommandRunner().on('/usr/lib/xen-4.17/bin/xl', ['list', 'vm1'], { stdout: listOf('-b----') });
    assert.equal(await new XenHypervisor({ runner, xl: '/usr/lib/xen-4.17/bin/xl' }).start('vm1', CONFIG, signal), false);
    assert.deepEqual(runner.lines, ['/usr/lib/xen-4.17/bin/xl list vm1']);
  });

  it('start of a domain that shut down or crashed but still exists is refused (FAILED_PRECONDITION), nothing created', async () => {
    for (const flags of ['---s--', '---sc-']) {
      const runner = new RecordingCommandRunner().on('xl', ['list', 'vm1'], { stdout: listOf(flags) });
      await assert.rejects(new XenHypervisor({ runner }).start('vm1', CONFIG, signal), assertVcstorError('FAILED_PRECONDITION', /stop it with force/));
      assert.deepEqual(runner.lines, ['xl list vm1']);
    }
  });

  it('start returns false when another caller created the domain in between', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], { exitCode: 1, stderr: noSuchDomain('vm1') })
      .on('xl', ['create', CONFIG], {
        exitCode: 1,
        stderr: 'libxl: error: libxl_create.c:620:libxl__domain_make: Domain with name "vm1" already exists.\n',
      });
    assert.equal(await new XenHypervisor({ runner }).start('vm1', CONFIG, signal), false);
  });

  it('start passes other xl create failures on with their stderr', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], { exitCode: 1, stderr: noSuchDomain('vm1') })
      .on('xl', ['create', CONFIG], { exitCode: 3, stderr: 'libxl: error: libxl_device.c:1111:device_backend_callback: Domain 9:unable to add device with path /local/domain/0/backend/vbd/9/51712\n' });
    await assert.rejects(new XenHypervisor({ runner }).start('vm1', CONFIG, signal), (err: unknown) => {
      assert.ok(err instanceof CommandError);
      assert.equal(err.code, 'INTERNAL');
      assert.match(err.message, /unable to add device/);
      return true;
    });
  });

  it('start refuses an all-digit name and a relative config path before running anything', async () => {
    const runner = new RecordingCommandRunner();
    const driver = new XenHypervisor({ runner });
    await assert.rejects(driver.start('42', CONFIG, signal), assertVcstorError('INVALID_ARGUMENT', /^name: 42 is all digits/));
    await assert.rejects(driver.start('vm1', 'vm1.cfg', signal), assertVcstorError('INVALID_ARGUMENT', /^configPath: /));
    assert.deepEqual(runner.lines, []);
  });

  it('stop asks the guest to shut down and waits, killed after the timeout', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], { stdout: listOf('-b----') })
      .on('xl', ['shutdown', '-w', '-F', 'vm1'], { stderr: 'Shutting down domain 7\nWaiting for 1 domains\nDomain 7 has been shut down, reason code 0\n' });
    assert.equal(await new XenHypervisor({ runner }).stop('vm1', false, 30_000, signal), true);
    assert.deepEqual(runner.lines, ['xl list vm1', 'xl shutdown -w -F vm1']);
    assert.equal(runner.calls[1]?.options.timeoutMs, 30_000);
  });

  it('stop with force destroys the domain', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['list', 'vm1'], { stdout: listOf('r-----') }).on('xl', ['destroy', 'vm1'], {});
    assert.equal(await new XenHypervisor({ runner }).stop('vm1', true, 5_000, signal), true);
    assert.deepEqual(runner.lines, ['xl list vm1', 'xl destroy vm1']);
  });

  it('stop of a missing domain runs nothing more (false)', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['list', 'vm1'], { exitCode: 1, stderr: noSuchDomain('vm1') });
    assert.equal(await new XenHypervisor({ runner }).stop('vm1', false, 5_000, signal), false);
    assert.deepEqual(runner.lines, ['xl list vm1']);
  });

  it('stop clears a crashed or shut-down domain with destroy and reports it was not running', async () => {
    for (const flags of ['---sc-', '---s--']) {
      const runner = new RecordingCommandRunner().on('xl', ['list', 'vm1'], { stdout: listOf(flags) }).on('xl', ['destroy', 'vm1'], {});
      assert.equal(await new XenHypervisor({ runner }).stop('vm1', false, 5_000, signal), false);
      assert.deepEqual(runner.lines, ['xl list vm1', 'xl destroy vm1']);
    }
  });

  it('stop returns false when the domain vanished between list and shutdown', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], { stdout: listOf('-b----') })
      .on('xl', ['shutdown', '-w', '-F', 'vm1'], { exitCode: 1, stderr: noSuchDomain('vm1') });
    assert.equal(await new XenHypervisor({ runner }).stop('vm1', false, 5_000, signal), false);
  });

  it('stop with force right after a shutdown: a failed destroy of a domain that then goes is "not running"', async () => {
    let lists = 0;
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], () => (++lists === 1 ? { stdout: listOf('---s--') } : { exitCode: 1, stderr: noSuchDomain('vm1') }))
      .on('xl', ['destroy', 'vm1'], { exitCode: 1, stderr: 'libxl: error: libxl_device.c:1111:device_backend_callback: Domain 7:unable to remove device with path /local/domain/0/backend/vbd/7/51728\nlibxl: error: libxl_domain.c:1530:devices_destroy_cb: Domain 7:libxl__devices_destroy failed\ndestroy failed (rc=-3)\nUnable to destroy guest\n' });
    assert.equal(await new XenHypervisor({ runner }).stop('vm1', true, 5_000, signal), false);
    assert.deepEqual(runner.lines, ['xl list vm1', 'xl destroy vm1', 'xl list vm1']);
  });

  it('stop with force fails when the domain stays after a failed destroy', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], { stdout: listOf('r-----') })
      .on('xl', ['destroy', 'vm1'], { exitCode: 1, stderr: 'destroy failed (rc=-3)\nUnable to destroy guest\n' });
    await assert.rejects(new XenHypervisor({ runner }).stop('vm1', true, 5_000, signal), /Unable to destroy guest/);
  });

  it('stop of a guest without PV drivers or ACPI is FAILED_PRECONDITION, pointing at force', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['list', 'vm1'], { stdout: listOf('-b----') })
      .on('xl', ['shutdown', '-w', '-F', 'vm1'], {
        exitCode: 1,
        stderr: 'Shutting down domain 7\nPV control interface not available: sending ACPI power button event.\nshutdown failed (rc=-3)\n',
      });
    await assert.rejects(new XenHypervisor({ runner }).stop('vm1', false, 5_000, signal), assertVcstorError('FAILED_PRECONDITION', /force/));
  });

  it('list runs xl list and leaves Domain-0 out', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['list'], { stdout: XL_LIST_REAL_BLOCKED });
    assert.deepEqual(await new XenHypervisor({ runner }).list(signal), [{ name: 'zephyr', id: 3, state: 'blocked', memoryMib: 512, vcpus: 1 }]);
    assert.deepEqual(runner.lines, ['xl list']);
  });

  it('passes the runner UNAVAILABLE on when xl is not installed', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['list'], new CommandError('UNAVAILABLE', 'xl is not installed on this host (not found in PATH)', { commandLine: 'xl list' }));
    await assert.rejects(new XenHypervisor({ runner }).list(signal), assertVcstorError('UNAVAILABLE', /xl is not installed/));
  });

  const newDisk: DomainDisk = { target: '/srv/vcstor/images/data,1.img', kind: 'tap-aio', vdev: 'xvdc', readOnly: false };
  const NEW_DISK_SPEC = 'format=raw, vdev=xvdc, access=rw, backendtype=qdisk, target=/srv/vcstor/images/data,1.img';

  it('attachDisk hot-plugs a disk the domain does not have, the whole spec as one argument', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['block-list', 'vm1'], { stdout: XL_BLOCK_LIST_REAL_QDISK })
      .on('xl', ['block-attach', 'vm1'], {});
    assert.deepEqual(await new XenHypervisor({ runner }).attachDisk('vm1', newDisk, signal), { guestDevice: '/dev/xvdc' });
    assert.deepEqual(runner.lines, ['xl block-list vm1', `xl block-attach vm1 '${NEW_DISK_SPEC}'`]);
    assert.deepEqual(runner.calls[1]?.args, ['block-attach', 'vm1', NEW_DISK_SPEC]);
  });

  it('attachDisk of a vdev already there with the same target runs no block-attach', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['block-list', 'vm1'], { stdout: XL_BLOCK_LIST_REAL_QDISK })
      .on('xl', ['list', '-l', 'vm1'], {
        stdout: listLongJson(10, [
          { pdev: '/dev/sdb', vdev: 'xvda', backend: 'phy', rw: true },
          { pdev: '/srv/vcstor/images/data,1.img', vdev: 'xvdb', backend: 'qdisk', rw: true },
        ]),
      });
    const disk: DomainDisk = { ...newDisk, vdev: 'xvdb' };
    assert.deepEqual(await new XenHypervisor({ runner }).attachDisk('vm1', disk, signal), { guestDevice: '/dev/xvdb' });
    assert.deepEqual(runner.lines, ['xl block-list vm1', 'xl list -l vm1']);
  });

  it('attachDisk of a vdev already holding another target is FAILED_PRECONDITION', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['block-list', 'vm1'], { stdout: XL_BLOCK_LIST_REAL_QDISK })
      .on('xl', ['list', '-l', 'vm1'], { stdout: listLongJson(10, [{ pdev: '/srv/vcstor/images/other.img', vdev: 'xvdb', backend: 'qdisk', rw: true }]) });
    await assert.rejects(
      new XenHypervisor({ runner }).attachDisk('vm1', { ...newDisk, vdev: 'xvdb' }, signal),
      assertVcstorError('FAILED_PRECONDITION', /xvdb of domain vm1 already holds \/srv\/vcstor\/images\/other\.img/),
    );
    assert.deepEqual(runner.lines, ['xl block-list vm1', 'xl list -l vm1']);
  });

  it('attachDisk trusts the vdev alone when the config is not JSON (output_format=sxp)', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['block-list', 'vm1'], { stdout: XL_BLOCK_LIST_REAL_QDISK })
      .on('xl', ['list', '-l', 'vm1'], { stdout: '(domain\n    (domid 10)\n    (create_info)\n)\n' });
    assert.deepEqual(await new XenHypervisor({ runner }).attachDisk('vm1', { ...newDisk, vdev: 'xvdb' }, signal), { guestDevice: '/dev/xvdb' });
  });

  it('attachDisk to a domain that does not exist is NOT_FOUND (xl block-list exits 0 then)', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['block-list', 'vm9'], { stdout: XL_BLOCK_LIST_EMPTY, stderr: noSuchDomain('vm9') });
    await assert.rejects(new XenHypervisor({ runner }).attachDisk('vm9', newDisk, signal), assertVcstorError('NOT_FOUND', /vm9 does not exist/));
    assert.deepEqual(runner.lines, ['xl block-list vm9']);
  });

  it('attachDisk refuses a disk xl cannot be given safely before running anything', async () => {
    const runner = new RecordingCommandRunner();
    await assert.rejects(
      new XenHypervisor({ runner }).attachDisk('vm1', { ...newDisk, target: "/srv/x'y.img" }, signal),
      assertVcstorError('INVALID_ARGUMENT', /^disk\.target: /),
    );
    assert.deepEqual(runner.lines, []);
  });

  it('detachDisk unplugs a vdev the domain has', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['block-list', 'vm1'], { stdout: XL_BLOCK_LIST_REAL_QDISK })
      .on('xl', ['block-detach', 'vm1', 'xvdb'], {});
    assert.equal(await new XenHypervisor({ runner }).detachDisk('vm1', 'xvdb', signal), true);
    assert.deepEqual(runner.lines, ['xl block-list vm1', 'xl block-detach vm1 xvdb']);
  });

  it('detachDisk of a vdev the domain does not have runs no block-detach (false)', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['block-list', 'vm1'], { stdout: XL_BLOCK_LIST_REAL_QDISK });
    assert.equal(await new XenHypervisor({ runner }).detachDisk('vm1', 'xvdc', signal), false);
    assert.deepEqual(runner.lines, ['xl block-list vm1']);
  });

  it('detachDisk on a domain that does not exist is false', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['block-list', 'vm9'], { stdout: XL_BLOCK_LIST_EMPTY, stderr: noSuchDomain('vm9') });
    assert.equal(await new XenHypervisor({ runner }).detachDisk('vm9', 'xvdb', signal), false);
    assert.deepEqual(runner.lines, ['xl block-list vm9']);
  });

  it('detachDisk returns false when the disk went away between block-list and block-detach', async () => {
    const runner = new RecordingCommandRunner()
      .on('xl', ['block-list', 'vm1'], { stdout: XL_BLOCK_LIST_REAL_QDISK })
      .on('xl', ['block-detach', 'vm1', 'xvdb'], { exitCode: 1, stderr: 'Error: Device xvdb not connected.\n' });
    assert.equal(await new XenHypervisor({ runner }).detachDisk('vm1', 'xvdb', signal), false);
  });

  it('detachDisk refuses a bad vdev before running anything', async () => {
    const runner = new RecordingCommandRunner();
    await assert.rejects(new XenHypervisor({ runner }).detachDisk('vm1', 'xvdb;reboot', signal), assertVcstorError('INVALID_ARGUMENT', /^vdev: /));
    assert.deepEqual(runner.lines, []);
  });
});

describe('XenHypervisor.checkConfig', () => {
  let dir = '';
  let kernel = '';
  let image = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-xen-'));
    kernel = path.join(dir, 'vmlinuz');
    image = path.join(dir, 'root,1.img');
    await writeFile(kernel, 'kernel');
    await writeFile(image, '');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const CONFIG = '/var/lib/vcstor/domains/vm1.cfg';
  const PARSING = `Parsing config from ${CONFIG}\n`;

  it('runs xl -N create and accepts a config xl parses silently whose files exist', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['-N', 'create', CONFIG], {
      stdout: dryRunJson([{ pdev: image, vdev: 'xvda', backend: 'phy', rw: true }], kernel, ''),
      stderr: PARSING,
    });
    await new XenHypervisor({ runner }).checkConfig(CONFIG, signal);
    assert.deepEqual(runner.lines, [`xl -N create ${CONFIG}`]);
  });

  it('turns xl refusing the config into INVALID_ARGUMENT with its complaint (real message)', async () => {
    const complaint = `${CONFIG}: config parsing error in disk specification: unknown value for access: near \`rx' in \`format=raw, vdev=xvdb, access=rx, target=/x'`;
    const runner = new RecordingCommandRunner().on('xl', ['-N', 'create', CONFIG], { exitCode: 1, stderr: `${PARSING}${complaint}\n` });
    await assert.rejects(new XenHypervisor({ runner }).checkConfig(CONFIG, signal), (err: unknown) => {
      assertVcstorError('INVALID_ARGUMENT', /unknown value for access: near `rx'/)(err);
      assert.ok(!(err as Error).message.includes('Parsing config from'), 'the Parsing line is not part of the complaint');
      return true;
    });
  });

  it('counts a warning on stderr as a complaint even though xl exits 0 (real message)', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['-N', 'create', CONFIG], {
      stdout: dryRunJson([], kernel, ''),
      stderr: `${PARSING}Warning: ignoring root= and extra= in favour of cmdline=\n`,
    });
    await assert.rejects(new XenHypervisor({ runner }).checkConfig(CONFIG, signal), assertVcstorError('INVALID_ARGUMENT', /ignoring root= and extra=/));
  });

  it('names a disk target that does not exist (xl does not check)', async () => {
    const missing = path.join(dir, 'missing.img');
    const runner = new RecordingCommandRunner().on('xl', ['-N', 'create', CONFIG], {
      stdout: dryRunJson([{ pdev: image, vdev: 'xvda', backend: 'phy', rw: true }, { pdev: missing, vdev: 'xvdb', backend: 'qdisk', rw: false }], kernel, ''),
      stderr: PARSING,
    });
    await assert.rejects(new XenHypervisor({ runner }).checkConfig(CONFIG, signal), assertVcstorError('INVALID_ARGUMENT', new RegExp(`disk xvdb ${missing} does not exist`)));
  });

  it('names a ramdisk that does not exist', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['-N', 'create', CONFIG], {
      stdout: dryRunJson([], kernel, '/boot/initrd.img-missing'),
      stderr: PARSING,
    });
    await assert.rejects(new XenHypervisor({ runner }).checkConfig(CONFIG, signal), assertVcstorError('INVALID_ARGUMENT', /ramdisk \/boot\/initrd\.img-missing does not exist/));
  });

  it('is UNAVAILABLE when xl cannot reach the hypervisor (real message without /dev/xen/privcmd)', async () => {
    const runner = new RecordingCommandRunner().on('xl', ['-N', 'create', CONFIG], {
      exitCode: 1,
      stderr:
        'xencall: error: Could not obtain handle on privileged command interface: No such file or directory\n' +
        'libxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: No such file or directory\n' +
        'cannot init xl context\n',
    });
    await assert.rejects(new XenHypervisor({ runner }).checkConfig(CONFIG, signal), assertVcstorError('UNAVAILABLE', /cannot reach the Xen hypervisor.*privileged command interface/));
  });
});

/*
 * The real xl parser, when xl is installed: `xl -N create` of every rendered variant and
 * `xl -N block-attach` of every kind of disk, through the LD_PRELOAD shim in
 * test/tools/xen-privcmd-shim.c (see LAB.md, "Xen's xl without a hypervisor").
 */
function findRealXl(): string | undefined {
  if (!existsSync('/usr/lib')) return undefined;
  const versions = readdirSync('/usr/lib').filter((entry) => /^xen-\d+\.\d+$/.test(entry)).sort();
  const newest = versions.at(-1);
  return newest !== undefined && existsSync(`/usr/lib/${newest}/bin/xl`) ? `/usr/lib/${newest}/bin/xl` : undefined;
}
const realXl = findRealXl();
const hasCompiler = spawnSync('gcc', ['--version']).status === 0;
const skipReal = !realXl
  ? 'xl is not installed (apt-get install --no-install-recommends xen-utils-4.17)'
  : !hasCompiler
    ? 'gcc is not installed (needed to build test/tools/xen-privcmd-shim.c)'
    : false;

/** Runs every command with the shim preloaded and XENSTORED_PATH set. */
class ShimmedRunner implements CommandRunner {
  private readonly real = new ExecaCommandRunner();
  constructor(private readonly env: Readonly<Record<string, string>>) {}
  run(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    return this.real.run(command, args, { ...options, env: { ...options.env, ...this.env } });
  }
}

interface DryRunDisk {
  pdev_path?: string;
  vdev?: string;
  backend?: string;
  format?: string;
  readwrite?: number;
}
interface DryRunConfig {
  c_info?: { name?: string; type?: string };
  b_info?: { kernel?: string; ramdisk?: string; cmdline?: string; bootloader?: string; max_memkb?: number; max_vcpus?: number };
  disks?: DryRunDisk[];
  nics?: Array<{ mac?: string; ip?: string; bridge?: string }>;
}

describe('the real xl parser (xl -N, through the privcmd shim)', { skip: skipReal }, () => {
  let dir = '';
  let runner: CommandRunner;
  let xenstored: Server | undefined;
  const sockets: Socket[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'vcstor-xl-'));
    // dist/test/unit → the repository root; a build elsewhere runs from the repository.
    const shimSource = [fileURLToPath(new URL('../../../test/tools/xen-privcmd-shim.c', import.meta.url)), path.resolve('test/tools/xen-privcmd-shim.c')].find((file) =>
      existsSync(file),
    );
    assert.ok(shimSource, 'test/tools/xen-privcmd-shim.c is missing');
    const shim = path.join(dir, 'xen-privcmd-shim.so');
    const build = spawnSync('gcc', ['-shared', '-fPIC', '-O2', '-o', shim, shimSource, '-ldl'], { encoding: 'utf8' });
    assert.equal(build.status, 0, `building the shim failed: ${build.stderr}`);
    // A dry run connects to xenstored but sends nothing: a socket that accepts is enough.
    const socketPath = path.join(dir, 'xenstored.sock');
    xenstored = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => xenstored?.listen(socketPath, resolve));
    runner = new ShimmedRunner({ LD_PRELOAD: shim, XENSTORED_PATH: socketPath });
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => (xenstored ? xenstored.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  async function dryRun(spec: DomainSpec): Promise<{ config: DryRunConfig; stderr: string }> {
    const file = path.join(dir, `${spec.name}.cfg`);
    await writeFile(file, renderXlConfig(spec));
    const result = await runner.run(realXl ?? 'xl', ['-N', 'create', file]);
    return { config: JSON.parse(result.stdout) as DryRunConfig, stderr: result.stderr };
  }

  for (const [variant, spec] of ALL_SPECS) {
    it(`parses the ${variant} config without complaint, into what the spec says`, async () => {
      const { config, stderr } = await dryRun(spec);
      assert.equal(stderr.trim(), `Parsing config from ${path.join(dir, `${spec.name}.cfg`)}`);
      assert.equal(config.c_info?.name, spec.name);
      assert.equal(config.c_info?.type, spec.type);
      assert.equal(config.b_info?.max_memkb, spec.memoryMib * 1024);
      assert.equal(config.b_info?.kernel, spec.kernel?.kernel);
      assert.equal(config.b_info?.ramdisk, spec.kernel?.ramdisk || undefined);
      assert.equal(config.b_info?.cmdline, spec.kernel?.cmdline || undefined);
      assert.equal(config.b_info?.bootloader, spec.bootloader);
      assert.deepEqual(
        (config.disks ?? []).map((disk) => [disk.pdev_path, disk.vdev, disk.backend, disk.format, disk.readwrite === 1]),
        spec.disks.map((disk) => [disk.target, disk.vdev, disk.kind === 'tap-aio' ? 'qdisk' : 'phy', 'raw', !disk.readOnly]),
      );
      assert.deepEqual(
        (config.nics ?? []).map((nic) => [nic.bridge ?? '', nic.mac ?? '', nic.ip ?? '']),
        spec.vifs.map((vif) => [vif.bridge, vif.mac.toLowerCase(), vif.ip]),
      );
    });
  }

  it('takes every kind of hot-plug disk spec as xl block-attach reads it', async () => {
    const disks: DomainDisk[] = [
      { target: BY_PATH_LUN, kind: 'phy', vdev: 'xvdf', readOnly: false },
      { target: '/srv/vcstor/images/a b,c.img', kind: 'file', vdev: 'xvdg', readOnly: true },
      { target: '/srv/vcstor/images/d.img', kind: 'tap-aio', vdev: 'xvdh', readOnly: false },
    ];
    for (const disk of disks) {
      // A numeric domain id: xl looks names up in xenstore, which the shim does not fake.
      const result = await runner.run(realXl ?? 'xl', ['-N', 'block-attach', '1', renderDiskSpec(disk)]);
      assert.equal(result.stderr, '');
      const parsed = JSON.parse(result.stdout.replace(/^disk: /, '')) as DryRunDisk;
      assert.deepEqual(
        [parsed.pdev_path, parsed.vdev, parsed.backend, parsed.readwrite === 1],
        [disk.target, disk.vdev, disk.kind === 'tap-aio' ? 'qdisk' : 'phy', !disk.readOnly],
      );
    }
  });

  it('checkConfig accepts a config whose files exist, and names a missing one', async () => {
    const driver = new XenHypervisor({ runner, xl: realXl });
    const kernelPath = path.join(dir, 'vmlinuz');
    const imagePath = path.join(dir, 'root,1.img');
    await writeFile(kernelPath, 'kernel');
    await writeFile(imagePath, '');
    const spec: DomainSpec = {
      ...pvhSpec,
      name: 'present',
      kernel: { kernel: kernelPath, ramdisk: '', cmdline: 'console=hvc0' },
      disks: [
        { target: '/dev/null', kind: 'phy', vdev: 'xvda', readOnly: true },
        { target: imagePath, kind: 'file', vdev: 'xvdb', readOnly: false },
      ],
    };
    const good = path.join(dir, 'present.cfg');
    await writeFile(good, renderXlConfig(spec));
    await driver.checkConfig(good, signal);

    const missing = path.join(dir, 'missing.cfg');
    await writeFile(missing, renderXlConfig({ ...spec, name: 'missing', disks: [{ target: '/dev/vcstor-no-such-lun', kind: 'phy', vdev: 'xvda', readOnly: false }] }));
    await assert.rejects(driver.checkConfig(missing, signal), assertVcstorError('INVALID_ARGUMENT', /disk xvda \/dev\/vcstor-no-such-lun does not exist/));
  });

  it('checkConfig reports what xl itself refuses and what it only warns about', async () => {
    const driver = new XenHypervisor({ runner, xl: realXl });
    const badAccess = path.join(dir, 'bad-access.cfg');
    await writeFile(badAccess, `${PVH_CONFIG}disk = [ 'format=raw, vdev=xvda, access=rx, target=/dev/null' ]\n`);
    await assert.rejects(driver.checkConfig(badAccess, signal), assertVcstorError('INVALID_ARGUMENT', /unknown value for access: near `rx'/));
    const warned = path.join(dir, 'warned.cfg');
    await writeFile(warned, `${PVH_CONFIG}extra = "x"\ncmdline = "y"\n`.replace('/var/lib/vcstor/kernels/bzImage', '/dev/null'));
    await assert.rejects(driver.checkConfig(warned, signal), assertVcstorError('INVALID_ARGUMENT', /ignoring root= and extra= in favour of cmdline=/));
    const syntax = path.join(dir, 'syntax.cfg');
    await writeFile(syntax, 'name = "unterminated\n');
    await assert.rejects(driver.checkConfig(syntax, signal), assertVcstorError('INVALID_ARGUMENT', /lexical error/));
  });
});
