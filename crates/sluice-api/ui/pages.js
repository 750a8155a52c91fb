// One function per page. Each renders into `main` from the /v1 API; what a user may do follows
// their role (admin actions are not shown to analysts, and the server refuses them anyway).

import { get, post, qs, isAdmin, ApiProblem } from './api.js';
import { h, fmt, epoch, timeChart, barsSvg, fill, add } from './charts.js';

const KINDS = ['scraping', 'credential_stuffing', 'enumeration', 'compromised_key', 'probing', 'flood', 'rate_spike', 'unusual'];

const card = (title, ...body) => h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...body);
const chartBox = (id) => h('div', { id, class: 'chart' });
const pill = (text) => h('span', { class: `pill ${text}` }, text);
const errorBox = (e) => h('p', { class: 'error' }, e instanceof ApiProblem ? e.message : `error: ${e.message}`);
const stat = (k, v, id) => h('div', { class: 'stat', id }, h('div', { class: 'v' }, v), h('div', { class: 'k' }, k));
const clientLink = (client, kind) => h('a', { href: `#/clients/${encodeURIComponent(client)}${kind ? qs({ kind }) : ''}` }, client);
const limitText = (l) => {
  if (!l) return '–';
  const extra = l.burst !== undefined ? ` burst ${l.burst}` : l.queue !== undefined ? ` queue ${l.queue}` : '';
  return `${l.algorithm} ${l.rate}/${l.window_seconds}s${extra}`;
};
const selectorText = (sel) => Object.entries(sel || {}).map(([k, v]) => `${k}=${v}`).join(' ') || '(everything)';

async function settle(promise) {
  try { return { ok: await promise }; } catch (err) { return { err }; }
}

// ---------------------------------------------------------------------------------- Overview

export async function overview(main) {
  const stats = h('div', { class: 'stats' });
  const fc = chartBox('chart-traffic');
  const lim = chartBox('chart-limited');
  const an = chartBox('chart-anomalies');
  const anTable = h('div');
  fill(main, 
    h('h1', {}, 'Overview'),
    stats,
    h('div', { class: 'grid' },
      card('Traffic: actual vs forecast, all routes (requests per minute, band: prediction interval)', fc),
      card('Requests limited (429) and errors per step', lim)),
    card('Open anomalies (first detected, score)', an, anTable),
  );
  const traffic = await settle(get('/v1/traffic'));
  if (traffic.err) { lim.replaceWith(errorBox(traffic.err)); return; }
  const t = traffic.ok;
  const windowMinutes = Math.round((epoch(t.to) - epoch(t.from)) / 60);
  const [forecast, anomalies, gateways] = await Promise.all([
    settle(get(`/v1/forecasts${qs({ route: '*', until: t.to, window_minutes: windowMinutes })}`)),
    settle(get(`/v1/anomalies${qs({ state: 'open', limit: 500 })}`)),
    settle(get('/v1/gateways')),
  ]);

  stats.append(
    stat('requests in window', fmt.num(t.totals.requests), 'stat-requests'),
    stat('limited (429)', fmt.num(t.totals.status_429), 'stat-429'),
    stat('open anomalies', anomalies.ok ? `${anomalies.ok.items.length}${anomalies.ok.next_cursor ? '+' : ''}` : '–', 'stat-anomalies'),
  );
  if (gateways.ok) {
    const v = gateways.ok.rollout.all;
    const all = gateways.ok.gateways;
    const running = all.filter((g) => v !== null && g.applied_version === v).length;
    stats.append(stat('policy version in force', v === null ? 'none' : `v${v}`, 'stat-policy'),
      stat('gateways running it', `${running} of ${all.length}`, 'stat-gateways'));
  }

  if (forecast.ok && forecast.ok.series.length) {
    const s = forecast.ok.series;
    timeChart(fc, {
      x: s.map((p) => epoch(p.minute)),
      series: [
        { label: 'actual', values: s.map((p) => p.actual), color: '#111827' },
        { label: 'forecast', values: s.map((p) => p.forecast), color: '#2563eb', dash: [6, 4] },
        { label: 'upper', values: s.map((p) => p.upper), color: 'rgba(37,99,235,0.3)' },
        { label: 'lower', values: s.map((p) => p.lower), color: 'rgba(37,99,235,0.3)' },
      ],
      bands: [[3, 4]],
      yLabel: 'requests / min',
    });
  } else {
    // No forecast yet: the actual traffic alone.
    timeChart(fc, {
      x: t.points.map((p) => epoch(p.t)),
      series: [{ label: 'actual', values: t.points.map((p) => p.requests), color: '#111827' }],
      yLabel: `requests / ${t.step_seconds / 60} min`,
    });
    fc.append(h('p', { class: 'muted' }, forecast.err ? `no forecast: ${forecast.err.message}` : 'no forecast in this window'));
  }
  timeChart(lim, {
    x: t.points.map((p) => epoch(p.t)),
    series: [
      { label: '429 limited', values: t.points.map((p) => p.status_429), color: '#dc2626' },
      { label: 'other 4xx', values: t.points.map((p) => p.status_4xx), color: '#f59e0b' },
      { label: '5xx', values: t.points.map((p) => p.status_5xx), color: '#7c3aed' },
    ],
    yLabel: `per ${t.step_seconds / 60} min`,
  });
  if (anomalies.err) { an.replaceWith(errorBox(anomalies.err)); return; }
  const items = [...anomalies.ok.items].sort((a, b) => epoch(a.first_detected) - epoch(b.first_detected));
  // One series per kind, so the legend says which kind each dot is.
  const kinds = [...new Set(items.map((a) => a.kind))];
  timeChart(an, {
    x: items.map((a) => epoch(a.first_detected)),
    series: kinds.map((k) => ({ label: k, points: true, values: items.map((a) => (a.kind === k ? a.score : null)) })),
    height: 200,
    yLabel: 'score',
    xRange: [epoch(t.from), epoch(t.to)],
  });
  anTable.append(anomalyTable(anomalies.ok.items.slice(0, 10)));
}

function anomalyTable(items) {
  if (!items.length) return h('p', { class: 'muted' }, 'No anomalies.');
  return h('table', { class: 'anomalies' },
    h('tr', {}, ['id', 'first detected', 'last flagged', 'kind', 'client', 'members', 'score', 'state'].map((c) => h('th', {}, c))),
    items.map((a) => h('tr', { 'data-id': a.id },
      h('td', {}, h('a', { href: `#/anomalies/${a.id}` }, `#${a.id}`)),
      h('td', {}, fmt.time(a.first_detected)),
      h('td', {}, fmt.time(a.last_flagged)),
      h('td', {}, a.kind),
      h('td', {}, clientLink(a.client, a.client_kind), h('span', { class: 'muted' }, ` ${a.client_kind}`)),
      h('td', {}, a.member_count ? `${a.member_count} (${a.campaign || 'campaign'})` : '–'),
      h('td', {}, fmt.num(a.score, 2)),
      h('td', {}, pill(a.state)))));
}

// --------------------------------------------------------------------------------- Anomalies

export async function anomalies(main, params) {
  const f = Object.fromEntries(params);
  const form = h('form', { class: 'filters', id: 'anomaly-filters' },
    h('label', {}, 'state', h('select', { name: 'state' }, ['', 'open', 'resolved'].map((s) => h('option', { value: s, selected: f.state === s }, s || 'any')))),
    h('label', {}, 'kind', h('select', { name: 'kind' }, ['', ...KINDS].map((s) => h('option', { value: s, selected: f.kind === s }, s || 'any')))),
    h('label', {}, 'client', h('input', { name: 'client', value: f.client || '' })),
    h('label', {}, 'since (RFC 3339)', h('input', { name: 'since', value: f.since || '', placeholder: '2026-03-02T00:00:00Z' })),
    h('label', {}, 'until', h('input', { name: 'until', value: f.until || '' })),
    h('label', {}, 'per page', h('select', { name: 'limit' }, ['25', '50', '100'].map((s) => h('option', { value: s, selected: (f.limit || '50') === s }, s)))),
    h('button', { class: 'primary', type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/anomalies${qs(Object.fromEntries(new FormData(form)))}`;
  });
  const list = h('div', { id: 'anomaly-list' });
  fill(main, h('h1', {}, 'Anomalies'), card(null, form, list));
  // Server-side keyset pagination: the cursors of the pages seen so far, for "previous".
  const cursors = [null];
  const load = async (page) => {
    list.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const r = await get(`/v1/anomalies${qs({ ...f, limit: f.limit || 50, cursor: cursors[page] })}`);
      cursors[page + 1] = r.next_cursor;
      fill(list, anomalyTable(r.items),
        h('div', { class: 'pager' },
          h('button', { disabled: page === 0, onclick: () => load(page - 1) }, '← Previous'),
          h('span', { class: 'muted', id: 'page-no' }, `page ${page + 1}`),
          h('button', { id: 'next-page', disabled: !r.next_cursor, onclick: () => load(page + 1) }, 'Next →')));
    } catch (e) { list.replaceChildren(errorBox(e)); }
  };
  await load(0);
}

export async function anomaly(main, id) {
  const a = await get(`/v1/anomalies/${encodeURIComponent(id)}`);
  const features = chartBox('chart-features');
  const traffic = chartBox('chart-client-traffic');
  const members = h('div', { id: 'members' });
  const suggestion = h('div', { id: 'suggestion' });
  fill(main, 
    h('h1', {}, `Anomaly #${a.id}: ${a.kind} `, pill(a.state)),
    h('div', { class: 'stats' },
      stat('client', clientLink(a.client, a.client_kind)),
      stat('score', fmt.num(a.score, 3)),
      stat('first detected', fmt.time(a.first_detected)),
      stat('last flagged', fmt.time(a.last_flagged)),
      a.campaign ? stat('campaign', `${a.campaign}, ${a.members_total} members`) : null),
    h('div', { class: 'grid' },
      card("Deviating features: observed vs the client's baseline", features),
      card('Client requests per minute vs its baseline, an hour either side of the anomaly', traffic)),
    card('Suggested limit', suggestion),
    a.member_count ? card(`Campaign members (${a.members_total})`, members) : null,
  );
  barsSvg(features, a.reasons.map((r) => ({ label: r.feature, observed: r.observed, expected: r.expected })),
    { labels: ['observed', 'baseline'] });
  // The client's minutes from an hour before the anomaly to an hour after its last flag.
  const until = new Date(Date.parse(a.last_flagged) + 3600e3).toISOString();
  const span = Math.min(10080, Math.ceil((Date.parse(until) - Date.parse(a.first_detected)) / 60e3) + 60);
  const [view, sugg] = await Promise.all([
    settle(get(`/v1/clients/${encodeURIComponent(a.client)}${qs({ kind: a.client_kind, until, window_minutes: span })}`)),
    settle(get(`/v1/suggestions${qs({ client: a.client, limit: 5 })}`)),
  ]);
  if (view.ok) {
    const rec = view.ok.recent;
    timeChart(traffic, {
      x: rec.map((m) => epoch(m.minute)),
      series: [
        { label: 'requests', values: rec.map((m) => m.requests), color: '#dc2626' },
        { label: 'baseline (expected)', values: rec.map((m) => m.expected_requests), color: '#94a3b8', dash: [5, 3] },
      ],
      yLabel: 'requests / min',
    });
  } else traffic.replaceWith(errorBox(view.err));
  if (sugg.ok && sugg.ok.items.length) add(suggestion, ...sugg.ok.items.slice(0, 2).map((s) => suggestionSummary(s)));
  else suggestion.append(h('p', { class: 'muted' }, sugg.err ? `suggestions unavailable: ${sugg.err.message}` : 'No limit suggested for this client.'));
  if (a.member_count) {
    const show = (page) => {
      members.append(h('table', {}, h('tr', {}, h('th', {}, 'kind'), h('th', {}, 'client')),
        page.members.map((m) => h('tr', {}, h('td', {}, m.client_kind), h('td', {}, clientLink(m.client, m.client_kind))))));
      if (page.members_next_cursor) {
        const more = h('button', {
          onclick: async () => {
            more.remove();
            show(await get(`/v1/anomalies/${a.id}${qs({ members_cursor: page.members_next_cursor })}`));
          },
        }, 'More members');
        members.append(more);
      }
    };
    show(a);
  }
}

function suggestionSummary(s) {
  return h('div', { class: 'suggestion-summary' },
    h('p', {}, pill(s.state), ' ', h('strong', {}, limitText(s.rule?.limit)),
      s.current ? ` (in force: ${limitText(s.current.limit)})` : ' (no limit in force)',
      ` confidence ${fmt.pct(s.confidence)} `, h('a', { href: `#/suggestions${qs({ client: s.client, state: s.state })}` }, 'review')),
    s.diff?.summary ? h('p', { class: 'muted' }, s.diff.summary) : null);
}

// ------------------------------------------------------------------------------------ Client

export async function client(main, name, params) {
  const kind = params.get('kind') || undefined;
  const enc = encodeURIComponent(name);
  const v = await get(`/v1/clients/${enc}${qs({ kind, window_minutes: 1440 })}`);
  const traffic = chartBox('chart-client-traffic');
  const rhythm = chartBox('chart-rhythm');
  const rep = chartBox('chart-reputation');
  const limited = chartBox('chart-client-limited');
  const limits = h('div', { id: 'limits' });
  const history = h('div', { id: 'limit-history' });
  const p = v.profile;
  fill(main, 
    h('h1', {}, `Client ${v.client} `, h('span', { class: 'muted' }, v.client_kind)),
    v.other_kinds.length ? h('p', { class: 'muted' }, 'Also seen as: ', v.other_kinds.map((k) => h('a', { href: `#/clients/${enc}${qs({ kind: k })}` }, `${k} `))) : null,
    h('div', { class: 'stats' },
      stat('last seen', fmt.time(v.last_seen)),
      stat('baseline requests/min (median ± MAD)', p ? `${fmt.num(p.requests_median, 1)} ± ${fmt.num(p.requests_mad, 1)}` : '–'),
      stat('p95 requests/min', p ? fmt.num(p.requests_p95, 1) : '–'),
      stat('anomalies', fmt.num(v.anomalies_total)),
      h('div', { class: 'stat', id: 'stat-reputation' }, h('div', { class: 'v' }, '–'), h('div', { class: 'k' }, 'reputation'))),
    h('div', { class: 'grid' },
      card('Requests per minute vs baseline (last 24 h of activity)', traffic),
      card('Daily rhythm (UTC hour): baseline median ± MAD vs observed mean', rhythm),
      card('Requests and 429s per step', limited),
      card('Reputation history', rep)),
    h('div', { class: 'grid' }, card('Limits in force', limits), card('Limit history (suggestions and decisions)', history)),
    card('Anomalies', anomalyTable(v.anomalies)),
  );
  const rec = v.recent;
  timeChart(traffic, {
    x: rec.map((m) => epoch(m.minute)),
    series: [
      { label: 'requests', values: rec.map((m) => m.requests), color: '#2563eb' },
      { label: 'baseline (expected)', values: rec.map((m) => m.expected_requests), color: '#94a3b8', dash: [5, 3] },
    ],
    yLabel: 'requests / min',
  });
  rhythmChart(rhythm, p, rec);
  const win = v.window;
  const [tr, lim, sugg] = await Promise.all([
    settle(win ? get(`/v1/traffic${qs({ client: v.client, client_kind: v.client_kind, from: win.since, to: win.until })}`) : Promise.reject(new Error('no activity'))),
    settle(get(`/v1/clients/${enc}/limits`)),
    settle(get(`/v1/suggestions${qs({ client: v.client, limit: 20 })}`)),
  ]);
  if (tr.ok) {
    timeChart(limited, {
      x: tr.ok.points.map((q) => epoch(q.t)),
      series: [
        { label: 'requests', values: tr.ok.points.map((q) => q.requests), color: '#2563eb' },
        { label: '429 limited', values: tr.ok.points.map((q) => q.status_429), color: '#dc2626' },
      ],
      yLabel: `per ${tr.ok.step_seconds / 60} min`,
    });
  } else limited.replaceWith(errorBox(tr.err));
  // Reputation: GET /v1/clients/{client} carries {score, history} once the tuning API serves it.
  const r = v.reputation;
  if (r) {
    document.querySelector('#stat-reputation .v').textContent = fmt.num(r.score, 3);
    const hist = [...(r.history || [])].sort((a, b) => epoch(a.at) - epoch(b.at));
    timeChart(rep, {
      x: hist.map((e) => epoch(e.at)),
      series: [{ label: 'score', values: hist.map((e) => e.score_after ?? e.score), color: '#16a34a' }],
      height: 180,
    });
  } else rep.append(h('p', { class: 'muted' }, 'No reputation recorded for this client.'));
  if (lim.ok) {
    const l = lim.ok;
    add(limits, h('p', { class: 'muted' }, l.version ? `policy v${l.version}` : 'no policy published'),
      ruleTable([...l.rules, ...l.per_client], l.rules.length),
      l.truncated ? h('p', { class: 'muted' }, 'More rules match than are listed.') : null);
  } else limits.append(errorBox(lim.err));
  if (sugg.ok) {
    history.append(sugg.ok.items.length ? h('table', {},
      h('tr', {}, ['created', 'state', 'limit', 'was', 'decided by', 'comment', 'version'].map((c) => h('th', {}, c))),
      sugg.ok.items.map((s) => h('tr', {},
        h('td', {}, fmt.time(s.created_at)), h('td', {}, pill(s.state)), h('td', {}, limitText(s.rule?.limit)),
        h('td', {}, limitText(s.current?.limit)), h('td', {}, s.decided_by || '–'), h('td', {}, s.decision_comment || ''),
        h('td', {}, s.policy_version ? `v${s.policy_version}` : '–')))) : h('p', { class: 'muted' }, 'No suggestions for this client.'));
  } else history.append(errorBox(sugg.err));
}

function ruleTable(rules, named) {
  if (!rules.length) return h('p', { class: 'muted' }, 'No rule applies to this client.');
  return h('table', {}, h('tr', {}, ['rule', 'selector', 'limit', 'mode', 'applies'].map((c) => h('th', {}, c))),
    rules.map((r, i) => h('tr', {}, h('td', {}, r.id), h('td', {}, selectorText(r.selector)), h('td', {}, limitText(r.limit)),
      h('td', {}, r.shadow ? 'shadow' : 'enforced'), h('td', {}, i < named ? 'names this client' : 'every client'))));
}

function rhythmChart(el, profile, recent) {
  if (!profile) { el.append(h('p', { class: 'muted' }, 'No baseline yet.')); el.dataset.points = '0'; return; }
  const sums = Array(24).fill(0), counts = Array(24).fill(0);
  for (const m of recent) { const hr = new Date(m.minute).getUTCHours(); sums[hr] += m.requests; counts[hr]++; }
  const hours = [...Array(24).keys()];
  const hod = profile.hour_of_day;
  timeChart(el, {
    x: hours,
    hours: true,
    series: [
      { label: 'baseline median', values: hod.map((s) => s.median), color: '#64748b' },
      { label: '+MAD', values: hod.map((s) => (s.median === null ? null : s.median + s.mad)), color: 'rgba(100,116,139,0.3)' },
      { label: '-MAD', values: hod.map((s) => (s.median === null ? null : Math.max(0, s.median - s.mad))), color: 'rgba(100,116,139,0.3)' },
      { label: 'observed mean', values: hours.map((hr) => (counts[hr] ? sums[hr] / counts[hr] : null)), color: '#2563eb', points: true },
    ],
    bands: [[2, 3]],
    yLabel: 'requests / min',
  });
}

// ------------------------------------------------------------------------------- Suggestions

export async function suggestions(main, params) {
  const f = Object.fromEntries(params);
  const state = f.state ?? 'pending';
  const form = h('form', { class: 'filters' },
    h('label', {}, 'state', h('select', { name: 'state' }, ['pending', 'approved', 'modified_approved', 'rejected', 'expired', ''].map((s) => h('option', { value: s, selected: state === s }, s || 'any')))),
    h('label', {}, 'client', h('input', { name: 'client', value: f.client || '' })),
    h('button', { class: 'primary', type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => { e.preventDefault(); location.hash = `#/suggestions${qs(Object.fromEntries(new FormData(form)))}`; });
  const list = h('div', { id: 'suggestion-list' });
  fill(main, h('h1', {}, 'Suggested limits'),
    isAdmin() ? null : h('p', { class: 'muted' }, 'Signed in as an analyst: you can review suggestions; deciding them needs an admin token.'),
    card(null, form), list);
  const cursors = [null];
  const load = async (page) => {
    list.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const r = await get(`/v1/suggestions${qs({ state, client: f.client, limit: 20, cursor: cursors[page] })}`);
      cursors[page + 1] = r.next_cursor;
      fill(list,
        ...(r.items.length ? r.items.map((s) => suggestionCard(s, () => load(page))) : [h('p', { class: 'muted' }, 'No suggestions.')]),
        h('div', { class: 'pager' },
          h('button', { disabled: page === 0, onclick: () => load(page - 1) }, '← Previous'),
          h('span', { class: 'muted' }, `page ${page + 1}`),
          h('button', { disabled: !r.next_cursor, onclick: () => load(page + 1) }, 'Next →')));
    } catch (e) { list.replaceChildren(errorBox(e)); }
  };
  await load(0);
}

function suggestionCard(s, reload) {
  const ev = s.evidence || {};
  const bt = s.backtest || ev.backtest;
  const el = h('section', { class: 'card suggestion', 'data-id': s.id },
    h('h2', {}, `#${s.id} ${s.rule_id} `, pill(s.state), s.abusive ? ' abusive' : '',
      s.client ? [' client ', clientLink(s.client)] : ''),
    h('table', {},
      h('tr', {}, h('th', {}, 'in force'), h('th', {}, 'suggested'), h('th', {}, 'change'), h('th', {}, 'confidence'), h('th', {}, 'created'), h('th', {}, 'expires')),
      h('tr', {}, h('td', { class: 'diff-del' }, limitText(s.current?.limit)), h('td', { class: 'diff-add' }, limitText(s.rule?.limit)),
        h('td', {}, s.diff?.summary || s.diff?.change || ''), h('td', {}, fmt.pct(s.confidence)),
        h('td', {}, fmt.time(s.created_at)), h('td', {}, fmt.time(s.expires_at)))),
    (s.reasons || []).length ? h('ul', {}, s.reasons.map((r) => h('li', {}, typeof r === 'string' ? r : JSON.stringify(r)))) : null,
    h('div', { class: 'grid' },
      h('div', {}, h('h2', {}, 'Evidence'), h('table', {},
        ev.baseline ? h('tr', {}, h('th', {}, 'baseline req/min'), h('td', {}, `median ${fmt.num(ev.baseline.requests_median, 1)}, MAD ${fmt.num(ev.baseline.requests_mad, 1)}, p95 ${fmt.num(ev.baseline.requests_p95, 1)}, peak 10 s p95 ${fmt.num(ev.baseline.peak_10s_p95, 1)}`)) : null,
        ev.anomaly ? h('tr', {}, h('th', {}, 'anomaly'), h('td', {}, h('a', { href: `#/anomalies/${ev.anomaly.anomaly_id}` }, `#${ev.anomaly.anomaly_id} ${ev.anomaly.kind}`), ` score ${fmt.num(ev.anomaly.score, 2)}, ${fmt.num(ev.anomaly.attack_per_minute, 0)}/min while flagged`)) : null,
        ev.reputation !== undefined ? h('tr', {}, h('th', {}, 'reputation'), h('td', {}, fmt.num(ev.reputation, 3))) : null,
        ev.capacity_factor !== undefined ? h('tr', {}, h('th', {}, 'capacity factor'), h('td', {}, fmt.num(ev.capacity_factor, 3))) : null,
        ev.forecast_per_minute ? h('tr', {}, h('th', {}, 'route forecast'), h('td', {}, `${fmt.num(ev.forecast_per_minute, 0)}/min`)) : null)),
      h('div', {}, h('h2', {}, 'Backtest over stored traffic'), bt ? h('table', { class: 'backtest' },
        h('tr', {}, ['clients', 'limited clients', 'requests', 'rejected', 'share rejected'].map((c) => h('th', {}, c)).map((x, i) => (i === 0 ? [h('th', {}, ''), x] : x))),
        ['normal', 'anomalous'].map((g) => bt[g] ? h('tr', {}, h('th', {}, g), h('td', {}, fmt.num(bt[g].clients)), h('td', {}, fmt.num(bt[g].clients_limited)),
          h('td', {}, fmt.num(bt[g].requests)), h('td', {}, fmt.num(bt[g].rejected)), h('td', {}, bt[g].requests ? fmt.pct(bt[g].rejected / bt[g].requests) : '–')) : null)) : h('p', { class: 'muted' }, 'No backtest.'))),
    s.decided_by ? h('p', { class: 'muted' }, `decided by ${s.decided_by}: ${s.decision_comment || ''}${s.policy_version ? ` (policy v${s.policy_version})` : ''}`) : null,
  );
  if (s.state === 'pending' && isAdmin()) el.append(decisionForm(s, reload));
  return el;
}

function decisionForm(s, reload) {
  const comment = h('textarea', { name: 'comment', placeholder: 'comment (required: why)' });
  const shadow = h('input', { type: 'checkbox', name: 'shadow', checked: true });
  const limit = h('textarea', { name: 'limit' });
  limit.value = JSON.stringify(s.rule?.limit ?? {}, null, 0);
  const out = h('div', { class: 'outcome' });
  const act = (action, body) => async () => {
    out.replaceChildren();
    if (!comment.value.trim()) { out.append(h('p', { class: 'error' }, 'Write a comment first.')); return; }
    try {
      const r = await post(`/v1/suggestions/${s.id}/${action}`, { comment: comment.value, ...body() });
      const v = r?.policy_version ?? r?.suggestion?.policy_version;
      const done = { approve: 'approved', reject: 'rejected', modify: 'modified and approved' }[action];
      out.append(h('p', { class: 'notice' }, `${done}${v ? `: policy version ${v} published` : ''}`));
      setTimeout(reload, 800);
    } catch (e) { out.append(errorBox(e)); }
  };
  const limitBody = () => { try { return { limit: JSON.parse(limit.value) }; } catch { throw new ApiProblem(400, 'the limit is not valid JSON'); } };
  return h('div', { class: 'decision' },
    comment,
    h('div', { class: 'actions' },
      h('label', {}, shadow, ' shadow first (report only, no rejections)'),
      h('button', { class: 'primary approve', onclick: act('approve', () => ({ shadow: shadow.checked })) }, 'Approve'),
      h('button', { class: 'danger reject', onclick: act('reject', () => ({})) }, 'Reject')),
    h('details', {}, h('summary', {}, 'Modify the limit and approve'), limit,
      h('button', { class: 'modify', onclick: act('modify', limitBody) }, 'Approve modified')),
    out);
}

// ------------------------------------------------------------------------------------ Policy

export async function policy(main, params) {
  const before = params.get('before') || undefined;
  const [list, gws] = await Promise.all([get(`/v1/policy/versions${qs({ limit: 20, before })}`), settle(get('/v1/gateways'))]);
  const diffOut = h('div', { id: 'diff' });
  const from = h('select', { name: 'from' }, list.versions.map((v, i) => h('option', { value: v.version, selected: i === 1 }, `v${v.version}`)));
  const to = h('select', { name: 'to' }, list.versions.map((v, i) => h('option', { value: v.version, selected: i === 0 }, `v${v.version}`)));
  const comment = h('input', { name: 'comment', placeholder: 'comment for a rollback', size: 40 });
  const actionOut = h('div');
  const inForce = list.rollout.all;
  fill(main, 
    h('h1', {}, 'Policy versions'),
    h('div', { class: 'stats' }, stat('served to everyone', inForce ? `v${inForce}` : 'none', 'stat-policy'),
      ...list.rollout.pinned.map(([g, v]) => stat(`pinned: ${g}`, `v${v}`))),
    card('Versions',
      isAdmin() ? h('div', { class: 'actions' }, comment, actionOut) : null,
      h('table', { id: 'versions' },
        h('tr', {}, ['version', 'created', 'by', 'rules', 'comment', 'to', ''].map((c) => h('th', {}, c))),
        list.versions.map((v) => h('tr', { 'data-version': v.version },
          h('td', {}, `v${v.version} `, v.version === inForce ? pill('current') : null, v.restored_from ? h('span', { class: 'muted' }, ` (copy of v${v.restored_from})`) : null),
          h('td', {}, fmt.time(v.created_at)), h('td', {}, v.created_by), h('td', {}, fmt.num(v.rule_count)),
          h('td', {}, v.comment || ''), h('td', {}, v.published_to || 'everyone'),
          h('td', {}, isAdmin() && v.version !== inForce ? h('button', {
            class: 'rollback',
            onclick: async () => {
              actionOut.replaceChildren();
              try {
                const r = await post('/v1/policy/rollback', { to: v.version, comment: comment.value || undefined });
                actionOut.append(h('span', { class: 'notice' }, `rolled back: v${r.version} is a copy of v${v.version}`));
                setTimeout(() => policy(main, params), 800);
              } catch (e) { actionOut.append(errorBox(e)); }
            },
          }, `Roll back to v${v.version}`) : null)))),
      h('div', { class: 'pager' },
        before ? h('a', { href: '#/policy' }, '← Newest') : null,
        list.next_before ? h('a', { href: `#/policy${qs({ before: list.next_before })}` }, 'Older →') : null)),
    card('Diff between two versions',
      h('div', { class: 'actions' }, 'from ', from, ' to ', to,
        h('button', { id: 'show-diff', onclick: () => showDiff(diffOut, from.value, to.value) }, 'Show diff')), diffOut),
    card('Rollout per gateway', gws.ok ? gatewayTable(gws.ok.gateways) : errorBox(gws.err)),
  );
  if (list.versions.length >= 2) await showDiff(diffOut, from.value, to.value);
}

async function showDiff(out, from, to) {
  out.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const d = await get(`/v1/policy/diff${qs({ from, to })}`);
    const row = (cls, sign, r, note) => h('tr', { class: cls }, h('td', {}, sign), h('td', {}, r.id), h('td', {}, selectorText(r.selector)), h('td', {}, note ?? limitText(r.limit)));
    fill(out,
      h('p', { class: 'muted' }, `v${d.from} → v${d.to}: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged`),
      h('table', { class: 'diff' },
        h('tr', {}, ['', 'rule', 'selector', 'limit'].map((c) => h('th', {}, c))),
        d.added.map((r) => row('diff-add', '+', r)),
        d.removed.map((r) => row('diff-del', '−', r)),
        d.changed.map((c) => row('', '~', c.after, `${limitText(c.before.limit)}${c.before.shadow ? ' (shadow)' : ''} → ${limitText(c.after.limit)}${c.after.shadow ? ' (shadow)' : ''} [${c.fields.join(', ')}]`))));
  } catch (e) { out.replaceChildren(errorBox(e)); }
}

function gatewayTable(gws) {
  if (!gws.length) return h('p', { class: 'muted' }, 'No gateway has reported yet.');
  return h('table', { id: 'gateways' },
    h('tr', {}, ['gateway', 'group', 'applied', 'desired', 'state', 'last seen', 'last error'].map((c) => h('th', {}, c))),
    gws.map((g) => h('tr', {}, h('td', {}, g.id), h('td', {}, g.group), h('td', {}, g.applied_version ? `v${g.applied_version}` : '–'),
      h('td', {}, g.desired_version ? `v${g.desired_version}` : '–'), h('td', {}, pill(g.state)), h('td', {}, fmt.time(g.last_seen)), h('td', {}, g.last_error || ''))));
}
