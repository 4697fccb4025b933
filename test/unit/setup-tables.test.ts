import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { iscsiSessionRow, linkRateOf } from '../../coordinator/campaign.js';

describe("a run's Tables 1 and 2 from what the agents said", () => {
  it("Table 1's link rate: a tbf's rate over the kernel's speed, one text when every host agrees", () => {
    const shaped = { links: [{ name: 'eth0', speedMbps: 10000, shapedBitsPerSecond: 1e9 }] };
    assert.equal(linkRateOf({ storage: shaped, dom0: shaped, guest: shaped }), 'eth0 1 Gbit/s (tc tbf) (every host)');
    const unshaped = { links: [{ name: 'eth0', speedMbps: 10000, shapedBitsPerSecond: 0 }] };
    assert.equal(linkRateOf({ storage: shaped, dom0: unshaped, guest: { links: [] } }), 'storage: eth0 1 Gbit/s (tc tbf); dom0: eth0 10 Gbit/s; guest: not reported');
    assert.equal(linkRateOf({ storage: { links: [{ name: 'bond0', speedMbps: 0, shapedBitsPerSecond: 100e6 }] } }), 'storage: bond0 100 Mbit/s (tc tbf); dom0: not reported; guest: not reported');
  });

  it("Table 2's session: negotiated values where the initiator reports them, else the target's offer, said so", () => {
    const offered = { initialR2t: true, immediateData: false, maxRecvDataSegmentLength: 8192, maxBurstLength: 65536, firstBurstLength: 65536, maxOutstandingR2t: 1 };
    const qsd = iscsiSessionRow({ initiator: 'dom0 (qsd)', target: 'iqn.2026-11.org.vcstor:v', offered, negotiated: undefined, detail: 'qemu does not report what its libiscsi session negotiated' });
    assert.deepEqual(qsd.params, { InitialR2T: 'Yes', ImmediateData: 'No', MaxRecvDataSegmentLength: '8192', MaxBurstLength: '65536', FirstBurstLength: '65536', MaxOutstandingR2T: '1' });
    assert.match(qsd.basis, /^the target's offer, read back from it: the session's bound under RFC 7143 \(qemu does not report/);
    const openIscsi = iscsiSessionRow({ initiator: 'guest (open-iscsi)', target: 'iqn.2026-11.org.vcstor:v', offered, negotiated: { immediateData: false, maxRecvDataSegmentLength: 262144, maxBurstLength: 0, firstBurstLength: 0, maxOutstandingR2t: 0 }, detail: '' });
    assert.deepEqual(openIscsi.params, { ImmediateData: 'No', MaxRecvDataSegmentLength: '262144' });
    assert.equal(openIscsi.basis, 'negotiated, as the initiator reports it');
  });
});
