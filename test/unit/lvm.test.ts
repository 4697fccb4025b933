import assert from 'node:assert/strict';
import { vcstorError } from '../support/errors.js';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { computeLoopMapping, LvmVolumes, parseLvmTime } from '../../agent-storage/drivers/lvm.js';
import { VcstorError } from '../../common/errors.js';
import { CommandError } from '../../common/runner.js';
import { RecordingCommandRunner, type ScriptedOutput } from '../support/runner-recording.js';

// Outputs captured from the real tools on a lab machine (lvm2 2.03.16, util-linux 2.38.1,
// Debian 12, no device-mapper): a 256 MiB file on /dev/loop0, a private lvm.conf with
// activation = 0, `vgcreate vcstortest /dev/loop0`, then `lvcreate ... vol1` (12 MiB,
// tagged vcstor) and `lvcreate ... foreign` (4 MiB, untagged). Pasted verbatim.

/** vgs of the new, empty group: 4 MiB extents, 63 of them. */
const VGS_EMPTY = `  {
      "report": [
          {
              "vg": [
                  {"vg_extent_size":"4194304", "vg_size":"264241152", "vg_free":"264241152"}
              ]
          }
      ]
  }
`;
/** vgs after vol1 and foreign took 4 extents. */
const VGS_AFTER = `  {
      "report": [
          {
              "vg": [
                  {"vg_extent_size":"4194304", "vg_size":"264241152", "vg_free":"247463936"}
              ]
          }
      ]
  }
`;
const LVS_EMPTY = `  {
      "report": [
          {
              "lv": [
              ]
          }
      ]
  }
`;
const LVS_VOL1_AND_FOREIGN = `  {
      "report": [
          {
              "lv": [
                  {"lv_name":"foreign", "lv_size":"4194304", "lv_tags":"", "lv_time":"2026-11-24 22:59:17 +0000"},
                  {"lv_name":"vol1", "lv_size":"12582912", "lv_tags":"vcstor", "lv_time":"2026-11-24 22:59:17 +0000"}
              ]
          }
      ]
  }
`;
const SEGMENTS_VOL1 = `  {
      "report": [
          {
              "lv": [
                  {"lv_name":"vol1", "seg_pe_ranges":"/dev/loop0:0-2"}
              ]
          }
      ]
  }
`;
/** After `lvextend --size +4194304b vcstortest/vol1`: the new extent is not adjacent. */
const SEGMENTS_VOL1_EXTENDED = `  {
      "report": [
          {
              "lv": [
                  {"lv_name":"vol1", "seg_pe_ranges":"/dev/loop0:0-2"},
                  {"lv_name":"vol1", "seg_pe_ranges":"/dev/loop0:4-4"}
              ]
          }
      ]
  }
`;
const PVS_LOOP0 = `  {
      "report": [
          {
              "pv": [
                  {"pv_name":"/dev/loop0", "vg_name":"vcstortest", "pe_start":"1048576", "pv_size":"264241152"}
              ]
          }
      ]
  }
`;
const LOSETUP_FIND = '/dev/loop1\n';
const LOSETUP_MAPPED = `{
   "loopdevices": [
      {
         "name": "/dev/loop1",
         "back-file": "/dev/loop0",
         "offset": 1048576,
         "sizelimit": 12582912
      },{
         "name": "/dev/loop0",
         "back-file": "/tmp/lvmcap/run.VNOf/pv.img",
         "offset": 0,
         "sizelimit": 0
      }
   ]
}
`;
const LOSETUP_UNMAPPED = `{
   "loopdevices": [
      {
         "name": "/dev/loop0",
         "back-file": "/tmp/lvmcap/run.VNOf/pv.img",
         "offset": 0,
         "sizelimit": 0
      }
   ]
}
`;
const ACTIVATION_WARNING = '  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n';
const LVCREATE_OK = { stdout: '  Logical volume "vol1" created.\n', stderr: `${ACTIVATION_WARNING}  WARNING: Logical volume vcstortest/vol1 not zeroed.\n` };
const LVCREATE_EXISTS = { exitCode: 5, stderr: `${ACTIVATION_WARNING}  Logical Volume "vol1" already exists in volume group "vcstortest"\n` };
const LVCREATE_NO_SPACE = { exitCode: 5, stderr: `${ACTIVATION_WARNING}  Volume group "vcstortest" has insufficient free space (59 extents): 64 required.\n` };
/** lvcreate with activation left on in lvm.conf, on a kernel without device-mapper. */
const LVCREATE_NO_DEVICE_MAPPER = {
  exitCode: 3,
  stderr:
    '  /dev/mapper/control: open failed: No such device\n  Failure to communicate with kernel device-mapper driver.\n  Check that device-mapper is available in the kernel.\n  Incompatible libdevmapper 1.02.185 (2022-05-18) and kernel driver (unknown version).\n  striped: Required device-mapper target(s) not detected in your kernel.\n  Run `lvcreate --help\' for more information.\n',
};
const LVREMOVE_OK = { stdout: '  Logical volume "vol1" successfully removed.\n', stderr: ACTIVATION_WARNING };
const LVREMOVE_MISSING = { exitCode: 5, stderr: `${ACTIVATION_WARNING}  Failed to find logical volume "vcstortest/vol1"\n` };
const LVS_NO_GROUP = { exitCode: 5, stdout: LVS_EMPTY, stderr: `${ACTIVATION_WARNING}  Volume group "vcstortest" not found\n  Cannot process volume group vcstortest\n` };

const VG = 'vcstortest';
const LVM_SYSTEM_DIR = '/etc/vcstor/lvm';
const MiB = 1024 * 1024;
const CREATED_MS = Date.UTC(2026, 10, 24, 22, 59, 17);
const REPORT = '--reportformat json --units b --nosuffix';
const LINES = {
  vgs: `vgs ${REPORT} -o vg_extent_size,vg_size,vg_free vcstortest`,
  lvs: `lvs ${REPORT} -o lv_name,lv_size,lv_tags,lv_time vcstortest`,
  segments: `lvs ${REPORT} -o lv_name,seg_pe_ranges vcstortest/vol1`,
  pvs: `pvs ${REPORT} -o pv_name,vg_name,pe_start,pv_size /dev/loop0`,
  loops: 'losetup --json --list -O NAME,BACK-FILE,OFFSET,SIZELIMIT',
  createVol1: 'lvcreate --yes --name vol1 --size 12582912b --addtag vcstor --addtag vcstor_zeroing -Zn --activate n vcstortest',
  mapVol1: 'losetup --find --show --offset 1048576 --sizelimit 12582912 /dev/loop0',
  detachLoop1: 'losetup --detach /dev/loop1',
  removeVol1: 'lvremove --yes vcstortest/vol1',
};
const EXTENT_QUERIES = [LINES.segments, LINES.vgs, LINES.pvs];

const signal = new AbortController().signal;

/** Scripted outputs of one machine; fields can be changed between calls of a test. */
interface Machine {
  vgs: string;
  lvs: string | { exitCode: number; stdout?: string; stderr: string };
  segments: string;
  pvs: string;
  loops: string[];
  /** lvcreate's answer; a function can also change the machine (the LV appears). */
  lvcreate: ScriptedOutput | Error | ((state: Machine) => ScriptedOutput | Error);
  lvremove: { stdout?: string; stderr?: string; exitCode?: number };
}

/** A recording runner that answers like the captured machine; `loops` is consumed in order (the last one repeats). */
function machine(overrides: Partial<Machine> = {}): { runner: RecordingCommandRunner; state: Machine } {
  const state: Machine = {
    vgs: VGS_AFTER,
    lvs: LVS_VOL1_AND_FOREIGN,
    segments: SEGMENTS_VOL1,
    pvs: PVS_LOOP0,
    loops: [LOSETUP_UNMAPPED],
    lvcreate: LVCREATE_OK,
    lvremove: LVREMOVE_OK,
    ...overrides,
  };
  const runner = new RecordingCommandRunner()
    .on('vgs', [], () => ({ stdout: state.vgs }))
    .when((command, args) => command === 'lvs' && args.includes('lv_name,seg_pe_ranges'), () => ({ stdout: state.segments }))
    .on('lvs', [], () => (typeof state.lvs === 'string' ? { stdout: state.lvs } : state.lvs))
    .on('pvs', [], () => ({ stdout: state.pvs }))
    .on('lvcreate', [], () => (typeof state.lvcreate === 'function' ? state.lvcreate(state) : state.lvcreate))
    .on('lvremove', [], () => state.lvremove)
    .on('losetup', ['--json', '--list'], () => ({ stdout: (state.loops.length > 1 ? state.loops.shift() : state.loops[0]) ?? '' }))
    .on('losetup', ['--find'], { stdout: LOSETUP_FIND })
    .on('losetup', ['--detach'], {})
    .on('lvchange', ['--deltag'], {});
  return { runner, state };
}

/** Zero-fills the driver asked for; never a real device in unit tests. */
const zeroed: Array<{ device: string; sizeBytes: number }> = [];

function lvm(runner: RecordingCommandRunner, options: { activation?: boolean; lvmSystemDir?: string; deviceDirectory?: string } = {}): LvmVolumes {
  return new LvmVolumes({
    runner,
    volumeGroup: VG,
    activation: options.activation ?? false,
    lvmSystemDir: 'lvmSystemDir' in options ? options.lvmSystemDir : LVM_SYSTEM_DIR,
    deviceDirectory: options.deviceDirectory,
    zeroFill: async (device, sizeBytes) => {
      zeroed.push({ device, sizeBytes });
    },
  });
}


describe('LvmVolumes (command lines, captured outputs)', () => {
  describe('create', () => {
    it('creates an inactive, tagged linear LV rounded up to whole extents, zeroes all of it through a loop device, then clears the zeroing tag', async () => {
      const { runner } = machine({
        vgs: VGS_EMPTY, lvs: LVS_EMPTY,
        lvcreate: (state) => {
          state.lvs = LVS_VOL1_AND_FOREIGN;
          return LVCREATE_OK;
        },
      });
      const volumes = lvm(runner);
      zeroed.length = 0;
      const result = await volumes.create({ name: 'vol1', sizeBytes: 10 * MiB + 1, provisioning: 'preallocated' }, { signal });

      assert.deepEqual(runner.lines.slice(0, 3), [LINES.vgs, LINES.lvs, LINES.createVol1]);
      assert.ok(runner.lines.includes('losetup --find --show --offset 1048576 --sizelimit 12582912 /dev/loop0'), runner.lines.join('\n'));
      assert.deepEqual(zeroed, [{ device: LOSETUP_FIND.trim(), sizeBytes: 12 * MiB }], 'the whole LV, through its own extents');
      const zeroedAt = runner.lines.indexOf('losetup --find --show --offset 1048576 --sizelimit 12582912 /dev/loop0');
      const untagged = runner.lines.indexOf('lvchange --deltag vcstor_zeroing vcstortest/vol1');
      assert.ok(untagged > zeroedAt, 'the zeroing tag is dropped only after the fill');
      assert.equal(result.created, true);
      assert.deepEqual(result.volume, {
        name: 'vol1',
        pool: 'vcstortest',
        sizeBytes: 12 * MiB,
        provisioning: 'preallocated',
        allocatedBytes: 12 * MiB,
        blockDevice: '',
        createdUnixMs: CREATED_MS,
        driver: 'lvm',
      });
      for (const call of runner.calls) {
        const expected = call.command === 'losetup' ? undefined : { LVM_SYSTEM_DIR };
        assert.deepEqual(call.options.env, expected, `environment of ${call.line}`);
      }
      assert.equal(volumes.roundSize(1), 4 * MiB);
      assert.equal(volumes.roundSize(8 * MiB), 8 * MiB);
    });

    it('lets LVM activate and zero the LV when the host has device-mapper, and passes no LVM_SYSTEM_DIR when none is set', async () => {
      const { runner } = machine({
        vgs: VGS_EMPTY, lvs: LVS_EMPTY,
        lvcreate: (state) => {
          state.lvs = LVS_VOL1_AND_FOREIGN;
          return LVCREATE_OK;
        },
      });
      const deviceDirectory = await mkdtemp(path.join(tmpdir(), 'vcstor-lvm-dev-'));
      // lvchange -ay makes the device node, as udev would; -an takes it away.
      runner.on('lvchange', ['-ay'], () => {
        mkdirSync(path.join(deviceDirectory, VG), { recursive: true });
        writeFileSync(path.join(deviceDirectory, VG, 'vol1'), '');
        return {};
      });
      runner.on('lvchange', ['-an'], () => {
        rmSync(path.join(deviceDirectory, VG, 'vol1'), { force: true });
        return {};
      });
      try {
        zeroed.length = 0;
        const result = await lvm(runner, { activation: true, lvmSystemDir: undefined, deviceDirectory }).create({ name: 'vol1', sizeBytes: 12 * MiB, provisioning: 'preallocated' }, { signal });
        assert.ok(runner.lines.includes('lvcreate --yes --name vol1 --size 12582912b --addtag vcstor --addtag vcstor_zeroing vcstortest'), runner.lines.join('\n'));
        assert.ok(!runner.lines.some((line) => line.startsWith('losetup')), 'no loop devices with activation');
        assert.deepEqual(zeroed, [{ device: path.join(deviceDirectory, VG, 'vol1'), sizeBytes: 12 * MiB }], 'zeroed through /dev/VG/NAME');
        assert.equal(result.volume.blockDevice, '', 'deactivated again after zeroing');
        for (const call of runner.calls) assert.equal(call.options.env, undefined, call.line);
      } finally {
        await rm(deviceDirectory, { recursive: true, force: true });
      }
    });

    it('is idempotent: the same name and rounded size returns the volume with created=false and runs no lvcreate', async () => {
      const { runner } = machine();
      const result = await lvm(runner).create({ name: 'vol1', sizeBytes: 9 * MiB, provisioning: 'preallocated' }, { signal });
      assert.equal(result.created, false);
      assert.equal(result.volume.sizeBytes, 12 * MiB);
      assert.deepEqual(runner.lines, [LINES.vgs, LINES.lvs, LINES.loops]);
    });

    it('refuses another size of an existing volume with ALREADY_EXISTS', async () => {
      const { runner } = machine();
      await assert.rejects(
        lvm(runner).create({ name: 'vol1', sizeBytes: 4 * MiB, provisioning: 'preallocated' }, { signal }),
        vcstorError('ALREADY_EXISTS', /vol1 already exists with 12582912 bytes; this request asks for 4194304 bytes/),
      );
      assert.ok(!runner.lines.some((line) => line.startsWith('lvcreate')));
    });

    it('refuses a name taken by an LV without the vcstor tag with ALREADY_EXISTS', async () => {
      const { runner } = machine();
      await assert.rejects(lvm(runner).create({ name: 'foreign', sizeBytes: 4 * MiB, provisioning: 'preallocated' }, { signal }), vcstorError('ALREADY_EXISTS', /not managed by vcstor/));
      assert.ok(!runner.lines.some((line) => line.startsWith('lvcreate')));
    });

    it('judges an LV that appeared between lvs and lvcreate like any existing one', async () => {
      const { runner } = machine({
        lvs: LVS_EMPTY,
        lvcreate: (state) => {
          state.lvs = LVS_VOL1_AND_FOREIGN;
          return LVCREATE_EXISTS;
        },
      });
      const result = await lvm(runner).create({ name: 'vol1', sizeBytes: 12 * MiB, provisioning: 'preallocated' }, { signal });
      assert.equal(result.created, false);
      assert.deepEqual(runner.lines, [LINES.vgs, LINES.lvs, LINES.createVol1, LINES.lvs, LINES.loops]);
    });

    it('reports too little free space as RESOURCE_EXHAUSTED before running lvcreate', async () => {
      const { runner } = machine();
      await assert.rejects(
        lvm(runner).create({ name: 'big', sizeBytes: 256 * MiB, provisioning: 'preallocated' }, { signal }),
        vcstorError('RESOURCE_EXHAUSTED', /vcstortest has 247463936 bytes free, volume big needs 268435456/),
      );
      assert.deepEqual(runner.lines, [LINES.vgs, LINES.lvs]);
    });

    it("turns lvcreate's own 'insufficient free space' into RESOURCE_EXHAUSTED (despite LVM's device-mapper warning)", async () => {
      const { runner } = machine({ vgs: VGS_EMPTY, lvs: LVS_EMPTY, lvcreate: LVCREATE_NO_SPACE });
      await assert.rejects(lvm(runner).create({ name: 'big', sizeBytes: 252 * MiB, provisioning: 'preallocated' }, { signal }), (err: unknown) => {
        vcstorError('RESOURCE_EXHAUSTED')(err);
        assert.equal(err instanceof VcstorError && err.retryable, true);
        return true;
      });
      assert.ok(runner.lines.includes('lvcreate --yes --name big --size 264241152b --addtag vcstor --addtag vcstor_zeroing -Zn --activate n vcstortest'));
    });

    it("refuses sparse volumes with FAILED_PRECONDITION and runs nothing", async () => {
      const { runner } = machine();
      await assert.rejects(lvm(runner).create({ name: 'thin1', sizeBytes: 4 * MiB, provisioning: 'sparse' }, { signal }), vcstorError('FAILED_PRECONDITION', /thin pool.*device-mapper/));
      assert.deepEqual(runner.lines, []);
    });

    it('refuses names LVM keeps for itself and bad sizes with INVALID_ARGUMENT, running nothing', async () => {
      const { runner } = machine();
      const volumes = lvm(runner);
      await assert.rejects(volumes.create({ name: 'snapshot1', sizeBytes: MiB, provisioning: 'preallocated' }, { signal }), vcstorError('INVALID_ARGUMENT', /reserved by LVM/));
      await assert.rejects(volumes.create({ name: 'a_tdata', sizeBytes: MiB, provisioning: 'preallocated' }, { signal }), vcstorError('INVALID_ARGUMENT', /reserved by LVM/));
      await assert.rejects(volumes.create({ name: '../vg', sizeBytes: MiB, provisioning: 'preallocated' }, { signal }), vcstorError('INVALID_ARGUMENT'));
      await assert.rejects(volumes.create({ name: 'vol2', sizeBytes: 0, provisioning: 'preallocated' }, { signal }), vcstorError('INVALID_ARGUMENT'));
      assert.deepEqual(runner.lines, []);
    });

    it('explains LVM that wants device-mapper (activation not off in lvm.conf) as FAILED_PRECONDITION', async () => {
      const { runner } = machine({ lvs: LVS_EMPTY, lvcreate: LVCREATE_NO_DEVICE_MAPPER });
      await assert.rejects(lvm(runner).create({ name: 'vol1', sizeBytes: 12 * MiB, provisioning: 'preallocated' }, { signal }), vcstorError('FAILED_PRECONDITION', /activation = 0/));
    });

    it('removes the LV when lvcreate was cancelled after making it', async () => {
      const { runner } = machine({
        lvs: LVS_EMPTY,
        lvcreate: (state) => {
          state.lvs = LVS_VOL1_AND_FOREIGN;
          return new CommandError('CANCELLED', `${LINES.createVol1} was cancelled`, { commandLine: LINES.createVol1, canceled: true });
        },
      });
      await assert.rejects(lvm(runner).create({ name: 'vol1', sizeBytes: 12 * MiB, provisioning: 'preallocated' }, { signal }), vcstorError('CANCELLED'));
      assert.deepEqual(runner.lines, [LINES.vgs, LINES.lvs, LINES.createVol1, LINES.lvs, LINES.removeVol1]);
    });
  });

  describe('list, get, capacity', () => {
    it('lists only vcstor-tagged LVs, with the loop device that maps each', async () => {
      const { runner } = machine({ loops: [LOSETUP_MAPPED] });
      const volumes = await lvm(runner).list(signal);
      assert.deepEqual(volumes, [
        { name: 'vol1', pool: 'vcstortest', sizeBytes: 12 * MiB, provisioning: 'preallocated', allocatedBytes: 12 * MiB, blockDevice: '/dev/loop1', createdUnixMs: CREATED_MS, driver: 'lvm' },
      ]);
      assert.deepEqual(runner.lines, [LINES.lvs, LINES.loops, ...EXTENT_QUERIES]);
    });

    it('skips the extent queries when no loop device has an offset (nothing can be mapped)', async () => {
      const { runner } = machine();
      const volumes = await lvm(runner).list(signal);
      assert.deepEqual(volumes.map((v) => `${v.name}:${v.blockDevice}`), ['vol1:']);
      assert.deepEqual(runner.lines, [LINES.lvs, LINES.loops]);
    });

    it('get: a vcstor volume, undefined for a missing one and for an LV vcstor does not manage', async () => {
      const { runner } = machine();
      const volumes = lvm(runner);
      assert.equal((await volumes.get('vol1', signal))?.sizeBytes, 12 * MiB);
      assert.equal(await volumes.get('missing', signal), undefined);
      assert.equal(await volumes.get('foreign', signal), undefined);
    });

    it('capacity: size and free space of the volume group', async () => {
      const { runner } = machine();
      assert.deepEqual(await lvm(runner).capacity(signal), { totalBytes: 264241152, freeBytes: 247463936 });
      assert.deepEqual(runner.lines, [LINES.vgs]);
    });

    it('a missing volume group is FAILED_PRECONDITION naming it', async () => {
      const { runner } = machine({ lvs: LVS_NO_GROUP });
      await assert.rejects(lvm(runner).list(signal), vcstorError('FAILED_PRECONDITION', /volume group vcstortest does not exist.*LVM_SYSTEM_DIR=\/etc\/vcstor\/lvm/));
    });

    it('parses lv_time, and gives 0 for a form it does not know', () => {
      assert.equal(parseLvmTime('2026-11-24 22:59:17 +0000'), CREATED_MS);
      assert.equal(parseLvmTime('2026-11-24 23:59:17 +0100'), CREATED_MS);
      assert.equal(parseLvmTime('24/11/2026'), 0);
    });
  });

  describe('attach and detach without device-mapper', () => {
    it('maps the LV extents with a loop device at pe_start + first extent * extent size', async () => {
      const { runner } = machine();
      assert.equal(await lvm(runner).attachBlockDevice('vol1', signal), '/dev/loop1');
      assert.deepEqual(runner.lines, [LINES.lvs, ...EXTENT_QUERIES, LINES.loops, LINES.mapVol1]);
    });

    it('computes the offset from the first extent of the segment', () => {
      const mapping = computeLoopMapping({
        lvPath: 'vcstortest/vol2',
        physicalVolume: '/dev/loop0',
        firstExtent: 3,
        lastExtent: 5,
        extentBytes: 4 * MiB,
        peStartBytes: MiB,
        pvSizeBytes: 63 * 4 * MiB,
        lvSizeBytes: 12 * MiB,
      });
      assert.deepEqual(mapping, { physicalVolume: '/dev/loop0', offsetBytes: 13631488, sizeLimitBytes: 12582912 });
    });

    it('is idempotent: an existing loop device with that backing device, offset and size limit is returned', async () => {
      const { runner } = machine({ loops: [LOSETUP_MAPPED] });
      const volumes = lvm(runner);
      assert.equal(await volumes.attachBlockDevice('vol1', signal), '/dev/loop1');
      assert.equal(await volumes.backingPath('vol1', signal), '/dev/loop1');
      assert.ok(!runner.lines.includes(LINES.mapVol1), 'no second loop device');
    });

    it('GUARD: an empty pe_start never reaches losetup (it would map the whole PV): INTERNAL', async () => {
      const { runner } = machine({ pvs: PVS_LOOP0.replace('"pe_start":"1048576"', '"pe_start":""') });
      await assert.rejects(lvm(runner).attachBlockDevice('vol1', signal), vcstorError('INTERNAL', /pe_start as ""/));
      assert.ok(!runner.lines.some((line) => line.startsWith('losetup')), runner.lines.join('\n'));
    });

    it('GUARD: an empty extent size, an empty or odd extent range, a size mismatch, pe_start 0: INTERNAL, no losetup', async () => {
      const broken: Array<Partial<Machine>> = [
        { vgs: VGS_AFTER.replace('"vg_extent_size":"4194304"', '"vg_extent_size":""') },
        { vgs: VGS_AFTER.replace('"vg_extent_size":"4194304"', '"vg_extent_size":"0"') },
        { segments: SEGMENTS_VOL1.replace('/dev/loop0:0-2', '') },
        { segments: SEGMENTS_VOL1.replace('/dev/loop0:0-2', '/dev/loop0:-2') },
        { segments: SEGMENTS_VOL1.replace('/dev/loop0:0-2', '/dev/loop0:2-0') },
        { segments: SEGMENTS_VOL1.replace('/dev/loop0:0-2', '/dev/loop0:0-3') },
        { pvs: PVS_LOOP0.replace('"pe_start":"1048576"', '"pe_start":"0"') },
        { pvs: PVS_LOOP0.replace('"pv_size":"264241152"', '"pv_size":"8388608"') },
        { pvs: PVS_LOOP0.replace('"vg_name":"vcstortest"', '"vg_name":"othervg"') },
      ];
      for (const overrides of broken) {
        const { runner } = machine(overrides);
        await assert.rejects(lvm(runner).attachBlockDevice('vol1', signal), vcstorError('INTERNAL'), JSON.stringify(overrides));
        assert.ok(!runner.lines.some((line) => line.startsWith('losetup')), JSON.stringify(overrides));
      }
    });

    it('refuses an LV of several segments with FAILED_PRECONDITION', async () => {
      const { runner } = machine({ segments: SEGMENTS_VOL1_EXTENDED });
      await assert.rejects(lvm(runner).attachBlockDevice('vol1', signal), vcstorError('FAILED_PRECONDITION', /2 segments/));
      assert.ok(!runner.lines.some((line) => line.startsWith('losetup')));
    });

    it('lists an LV of several segments with no block device instead of failing', async () => {
      const { runner } = machine({ segments: SEGMENTS_VOL1_EXTENDED, loops: [LOSETUP_MAPPED] });
      assert.deepEqual((await lvm(runner).list(signal)).map((v) => `${v.name}:${v.blockDevice}`), ['vol1:']);
    });

    it('refuses a striped LV (several ranges in one segment) with FAILED_PRECONDITION', async () => {
      const { runner } = machine({ segments: SEGMENTS_VOL1.replace('/dev/loop0:0-2', '/dev/loop0:0-1 /dev/loop2:0-1') });
      await assert.rejects(lvm(runner).attachBlockDevice('vol1', signal), vcstorError('FAILED_PRECONDITION', /striped or mirrored/));
    });

    it('attach of a missing or foreign volume is NOT_FOUND', async () => {
      const { runner } = machine();
      await assert.rejects(lvm(runner).attachBlockDevice('missing', signal), vcstorError('NOT_FOUND'));
      await assert.rejects(lvm(runner).attachBlockDevice('foreign', signal), vcstorError('NOT_FOUND'));
    });

    it('detach detaches the loop device and checks it is gone; again, it does nothing', async () => {
      const { runner, state } = machine({ loops: [LOSETUP_MAPPED, LOSETUP_UNMAPPED] });
      const volumes = lvm(runner);
      await volumes.detachBlockDevice('vol1', signal);
      assert.deepEqual(runner.lines, [LINES.lvs, ...EXTENT_QUERIES, LINES.loops, LINES.detachLoop1, LINES.loops]);
      state.loops = [LOSETUP_UNMAPPED];
      runner.calls.length = 0;
      await volumes.detachBlockDevice('vol1', signal);
      assert.deepEqual(runner.lines, [LINES.lvs, ...EXTENT_QUERIES, LINES.loops]);
      runner.calls.length = 0;
      await volumes.detachBlockDevice('missing', signal);
      assert.deepEqual(runner.lines, [LINES.lvs]);
    });

    it('detach of a device still open elsewhere (the kernel only marks it autoclear) is FAILED_PRECONDITION', async () => {
      const { runner } = machine({ loops: [LOSETUP_MAPPED] });
      await assert.rejects(lvm(runner).detachBlockDevice('vol1', signal), vcstorError('FAILED_PRECONDITION', /\/dev\/loop1 is still in use/));
    });
  });

  describe('attach and detach with device-mapper', () => {
    it('activates with lvchange -ay when /dev/VG/NAME is missing, and deactivates on detach', async () => {
      const deviceDirectory = await mkdtemp(path.join(tmpdir(), 'vcstor-lvm-dev-'));
      try {
        const node = path.join(deviceDirectory, VG, 'vol1');
        const { runner } = machine();
        runner.on('lvchange', ['-ay'], () => {
          mkdirSync(path.dirname(node), { recursive: true });
          writeFileSync(node, '');
          return {};
        });
        runner.on('lvchange', ['-an'], {});
        const volumes = lvm(runner, { activation: true, deviceDirectory });
        assert.equal(await volumes.attachBlockDevice('vol1', signal), node);
        assert.equal(await volumes.attachBlockDevice('vol1', signal), node);
        assert.equal((await volumes.get('vol1', signal))?.blockDevice, node);
        await volumes.detachBlockDevice('vol1', signal);
        assert.deepEqual(runner.lines, [LINES.lvs, 'lvchange -ay vcstortest/vol1', LINES.lvs, LINES.lvs, LINES.lvs, 'lvchange -an vcstortest/vol1']);
      } finally {
        await rm(deviceDirectory, { recursive: true, force: true });
      }
    });
  });

  describe('delete', () => {
    it('detaches the loop device, then removes the LV', async () => {
      const { runner } = machine({ loops: [LOSETUP_MAPPED, LOSETUP_UNMAPPED] });
      assert.equal(await lvm(runner).delete('vol1', signal), true);
      assert.deepEqual(runner.lines, [LINES.lvs, ...EXTENT_QUERIES, LINES.loops, LINES.detachLoop1, LINES.loops, LINES.removeVol1]);
    });

    it('returns false for a missing volume, and when lvremove finds it gone', async () => {
      const { runner } = machine({ lvremove: LVREMOVE_MISSING });
      const volumes = lvm(runner);
      assert.equal(await volumes.delete('missing', signal), false);
      assert.deepEqual(runner.lines, [LINES.lvs]);
      assert.equal(await volumes.delete('vol1', signal), false);
      assert.equal(runner.lines.at(-1), LINES.removeVol1);
    });

    it('removes nothing while the loop device is still open', async () => {
      const { runner } = machine({ loops: [LOSETUP_MAPPED] });
      await assert.rejects(lvm(runner).delete('vol1', signal), vcstorError('FAILED_PRECONDITION', /still in use/));
      assert.ok(!runner.lines.some((line) => line.startsWith('lvremove')));
    });

    it('removes an LV of several segments (no loop device can have mapped it)', async () => {
      const { runner } = machine({ segments: SEGMENTS_VOL1_EXTENDED, loops: [LOSETUP_MAPPED] });
      assert.equal(await lvm(runner).delete('vol1', signal), true);
      assert.deepEqual(runner.lines, [LINES.lvs, LINES.segments, LINES.removeVol1]);
    });

    it('never removes an LV without the vcstor tag', async () => {
      const { runner } = machine();
      await assert.rejects(lvm(runner).delete('foreign', signal), vcstorError('FAILED_PRECONDITION', /not managed by vcstor/));
      assert.ok(!runner.lines.some((line) => line.startsWith('lvremove')));
    });
  });

  describe('everything else', () => {
    it('passes the AbortSignal to the runner in every method', async () => {
      const controller = new AbortController();
      const reason = new Error('stop');
      controller.abort(reason);
      const { runner } = machine();
      const volumes = lvm(runner);
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['create', () => volumes.create({ name: 'vol1', sizeBytes: MiB, provisioning: 'preallocated' }, { signal: controller.signal })],
        ['delete', () => volumes.delete('vol1', controller.signal)],
        ['get', () => volumes.get('vol1', controller.signal)],
        ['list', () => volumes.list(controller.signal)],
        ['capacity', () => volumes.capacity(controller.signal)],
        ['backingPath', () => volumes.backingPath('vol1', controller.signal)],
        ['attachBlockDevice', () => volumes.attachBlockDevice('vol1', controller.signal)],
        ['detachBlockDevice', () => volumes.detachBlockDevice('vol1', controller.signal)],
      ];
      for (const [method, call] of calls) await assert.rejects(call(), (err: unknown) => err === reason, method);
    });

    it('refuses a volume group name LVM would refuse, and a relative lvmSystemDir', () => {
      const runner = new RecordingCommandRunner();
      assert.throws(() => new LvmVolumes({ runner, volumeGroup: '-vg', activation: false }), vcstorError('INVALID_ARGUMENT', /volumeGroup/));
      assert.throws(() => new LvmVolumes({ runner, volumeGroup: 'vg 1', activation: false }), vcstorError('INVALID_ARGUMENT', /volumeGroup/));
      assert.throws(() => new LvmVolumes({ runner, volumeGroup: 'vg1', activation: false, lvmSystemDir: 'etc/lvm' }), vcstorError('INVALID_ARGUMENT', /lvmSystemDir/));
      assert.equal(new LvmVolumes({ runner, volumeGroup: 'vg1', activation: false }).pool, 'vg1');
    });
  });
});
