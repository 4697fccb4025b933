/**
 * The run's set-up as the paper's Tables 1 and 2: each host (kernel, CPUs, memory, tools,
 * link, drivers) and the benchmarks' parameters; the iSCSI parameters as requested and as
 * each session negotiated them, and each NFS client's options. Text and HTML. Pure
 * functions.
 */

import type { RunSetup } from '../model.js';
import { esc, fixedWidth } from './format.js';

const NOT_RECORDED = 'not recorded';

function mibText(bytes: number): string {
  return bytes > 0 ? `${Math.round(bytes / 2 ** 20)} MiB` : 'unknown';
}

type SetupHost = RunSetup['hosts'][number];

/** Table 1's cells of a host: what the run recorded, "not recorded" for what it did not (older runs). */
function hostFacts(h: SetupHost, setup: RunSetup): { kernel: string; cpus: string; tools: string; link: string } {
  const tools = h.tools ? Object.entries(h.tools).map(([tool, version]) => `${tool}: ${version}`) : undefined;
  return {
    kernel: h.kernel || NOT_RECORDED,
    cpus: h.cpus !== undefined && h.cpus > 0 ? String(h.cpus) : NOT_RECORDED,
    tools: tools === undefined ? NOT_RECORDED : tools.length === 0 ? 'none' : tools.join('; '),
    link: setup.linkRate || NOT_RECORDED,
  };
}

/** "k=v k=v" of a parameter set. */
function paramsText(params: Record<string, string>): string {
  return Object.entries(params).map(([k, v]) => `${k}=${v}`).join(' ');
}

/** Every iSCSI parameter named by the request or a session, the request's first. */
function iscsiParamNames(setup: RunSetup): string[] {
  const names: string[] = [];
  for (const params of [setup.iscsiParams ?? {}, ...(setup.iscsiSessions ?? []).map((s) => s.params)]) for (const name of Object.keys(params)) if (!names.includes(name)) names.push(name);
  return names;
}

/** Tables 1 and 2 as terminal lines: the hosts as a fixed-width table, then the tools, the iSCSI sessions and the NFS clients. */
export function setupText(setup: RunSetup): string[] {
  const rows = setup.hosts.map((h) => {
    const f = hostFacts(h, setup);
    return [h.role, h.name, f.kernel, f.cpus, mibText(h.memoryBytes), h.memoryScope, f.link, h.drivers.join(' ')];
  });
  const lines = [
    `set-up: ${setup.repetitions} repetitions, ${mibText(setup.volumeSizeBytes)} ${setup.provisioning} volumes; ${Object.entries(setup.benchmarks).map(([name, spec]) => `${name} (${spec})`).join('; ')}`,
    'Table 1: hosts',
    ...fixedWidth(['role', 'host', 'kernel', 'cpus', 'memory', 'memory of', 'link', 'drivers'], rows, [false, false, false, true, true, false, false, false]),
    ...setup.hosts.map((h) => `  tools on ${h.name}: ${hostFacts(h, setup).tools}`),
    'Table 2: iSCSI and NFS parameters',
    `  iSCSI requested: ${setup.iscsiParams ? paramsText(setup.iscsiParams) || 'none (the drivers\' defaults)' : NOT_RECORDED}`,
  ];
  if (setup.iscsiSessions === undefined) lines.push(`  iSCSI negotiated: ${NOT_RECORDED}`);
  else if (setup.iscsiSessions.length === 0) lines.push('  iSCSI negotiated: no session');
  else for (const s of setup.iscsiSessions) lines.push(`  iSCSI session, ${s.method} (${s.initiator} → ${s.target}): ${paramsText(s.params)}${s.basis ? ` [${s.basis}]` : ''}`);
  if (setup.nfsClients === undefined) lines.push(`  NFS clients: ${NOT_RECORDED}`);
  else if (setup.nfsClients.length === 0) lines.push('  NFS clients: none');
  else for (const c of setup.nfsClients) lines.push(`  NFS client, ${c.method} (${c.client}): ${c.options}`);
  return lines;
}

/** Tables 1 and 2 as the page's set-up section: the hosts, the benchmarks' parameters, then Table 2. */
export function renderSetup(setup: RunSetup): string {
  const rows = setup.hosts.map((h) => {
    const f = hostFacts(h, setup);
    const cell = (text: string, cls = '') => `<td${text === NOT_RECORDED ? ' class="not-recorded"' : cls ? ` class="${cls}"` : ''}>${esc(text)}</td>`;
    return `<tr data-role="${esc(h.role)}"><td>${esc(h.role)}</td><td>${esc(h.name)}</td><td>${esc(h.hostname)}</td>${cell(f.kernel)}${cell(f.cpus, 'num')}<td class="num">${esc(mibText(h.memoryBytes))}</td><td>${esc(h.memoryScope)}</td>${cell(f.tools)}${cell(f.link)}<td>${esc(h.version)}</td><td>${esc(h.drivers.join(', '))}</td></tr>`;
  });
  const benchmarks = Object.entries(setup.benchmarks).map(([name, spec]) => `<tr><th scope="row">${esc(name)}</th><td>${esc(spec)}</td></tr>`);
  return [
    '<section class="setup">',
    '<h2>Set-up (Table 1)</h2>',
    `<p>${setup.repetitions} repetitions of every method and benchmark, on ${esc(mibText(setup.volumeSizeBytes))} ${esc(setup.provisioning)} volumes and images. Each host as its agent described itself when the run began; its memory is its memory cgroup's limit where hosts share a kernel (the lab), else the machine's; the link is the rate every lab link was shaped to. "not recorded": the run predates the field.</p>`,
    '<table class="setup">',
    '<thead><tr><th>role</th><th>agent</th><th>hostname</th><th>kernel</th><th>CPUs</th><th>memory</th><th>memory of</th><th>tools</th><th>link</th><th>vcstor</th><th>drivers</th></tr></thead>',
    `<tbody>${rows.join('\n')}</tbody>`,
    '</table>',
    '<table class="benchmarks">',
    `<tbody>${benchmarks.join('\n')}</tbody>`,
    '</table>',
    renderTable2(setup),
    '</section>',
  ].join('\n');
}

/** Table 2: iSCSI parameters (a row each) as requested and as each session negotiated them; each NFS client's options. */
function renderTable2(setup: RunSetup): string {
  const sessions = setup.iscsiSessions ?? [];
  const names = iscsiParamNames(setup);
  const parts = ['<h3 id="table-2">Table 2: iSCSI and NFS parameters</h3>'];
  if (setup.iscsiParams === undefined && setup.iscsiSessions === undefined) {
    parts.push(`<p class="not-recorded" data-table2="iscsi">iSCSI session parameters: ${NOT_RECORDED}.</p>`);
  } else if (names.length === 0) {
    parts.push(`<p data-table2="iscsi">iSCSI session parameters: requested ${setup.iscsiParams ? "none (the drivers' defaults)" : NOT_RECORDED}; negotiated ${setup.iscsiSessions ? 'by no session' : NOT_RECORDED}.</p>`);
  } else {
    const header = `<tr><th>parameter</th><th scope="col">requested</th>${sessions.map((s) => `<th scope="col" data-method="${esc(s.method)}">${esc(s.method)}<span class="basis"> ${esc(s.initiator)} → ${esc(s.target)}</span></th>`).join('')}${setup.iscsiSessions === undefined ? `<th scope="col">negotiated</th>` : ''}</tr>`;
    const rows = names.map((name) => {
      const requested = setup.iscsiParams === undefined ? NOT_RECORDED : (setup.iscsiParams[name] ?? "the driver's default");
      const negotiated = setup.iscsiSessions === undefined ? [`<td class="not-recorded">${NOT_RECORDED}</td>`] : sessions.map((s) => `<td data-method="${esc(s.method)}" data-param="${esc(name)}">${esc(s.params[name] ?? '-')}</td>`);
      return `<tr><th scope="row">${esc(name)}</th><td${requested === NOT_RECORDED ? ' class="not-recorded"' : ''} data-param="${esc(name)}">${esc(requested)}</td>${negotiated.join('')}</tr>`;
    });
    parts.push('<table class="iscsi-params" data-table2="iscsi">', `<thead>${header}</thead>`, `<tbody>${rows.join('\n')}</tbody>`, '</table>');
    // Whether a column is what the session negotiated or what the target offered.
    // Sessions of one basis share a line: the same initiator says the same thing for each.
    const byBasis = new Map<string, string[]>();
    for (const session of sessions) if (session.basis) byBasis.set(session.basis, [...(byBasis.get(session.basis) ?? []), session.method]);
    if (byBasis.size > 0) parts.push(`<ul class="basis" data-table2="basis">${[...byBasis].map(([basis, methods]) => `<li data-methods="${esc(methods.join(' '))}">${esc(methods.join(', '))}: ${esc(basis)}</li>`).join('')}</ul>`);
  }
  if (setup.nfsClients === undefined) {
    parts.push(`<p class="not-recorded" data-table2="nfs">NFS client options: ${NOT_RECORDED}.</p>`);
  } else if (setup.nfsClients.length === 0) {
    parts.push('<p data-table2="nfs">NFS client options: no NFS client in this run.</p>');
  } else {
    parts.push(
      '<table class="nfs-clients" data-table2="nfs">',
      '<thead><tr><th>method</th><th>client</th><th>options</th></tr></thead>',
      `<tbody>${setup.nfsClients.map((c) => `<tr data-method="${esc(c.method)}"><td>${esc(c.method)}</td><td>${esc(c.client)}</td><td>${esc(c.options)}</td></tr>`).join('\n')}</tbody>`,
      '</table>',
    );
  }
  return parts.join('\n');
}
