// DOM and chart helpers. Data from the API (client names, rule ids, comments) is attacker-
// controlled text: it only ever enters the page as text nodes or attribute values, never as HTML.

/// Create an element: h('a', {href: '#/x', class: 'c'}, 'text', child, ...).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/// Replace an element's children, leaving out null/undefined/false (the DOM would print "null").
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/// Append children, leaving out null/undefined/false.
export function add(el, ...children) {
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

export const fmt = {
  time: (t) => (t ? new Date(t).toISOString().replace('T', ' ').replace(/:00(\.000)?Z$/, 'Z').replace(/\.\d+Z$/, 'Z') : '–'),
  num: (n, d = 0) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US', { maximumFractionDigits: d })),
  pct: (n) => (n === null || n === undefined ? '–' : `${(n * 100).toFixed(1)}%`),
};

export const epoch = (t) => Date.parse(t) / 1000;

const COLORS = ['#2563eb', '#f59e0b', '#dc2626', '#16a34a', '#7c3aed', '#0891b2'];

function countPoints(data) {
  let n = 0;
  for (const series of data.slice(1)) for (const v of series) if (v !== null && v !== undefined) n++;
  return n;
}

/// A time chart with uPlot. `x` in epoch seconds; each series {label, values, color, dash,
/// points: true for dots only, fill}. `bands`: [[upperIndex, lowerIndex]] (1-based series).
/// The container gets data-points (non-null values drawn) for tests and screen readers.
/// `xRange`: [min, max] of the x axis (default: the data's). `hours`: x is an hour of the day
/// (0..23), not a time.
export function timeChart(el, { x, series, bands = [], height = 240, yLabel = '', xRange, hours = false }) {
  el.replaceChildren();
  el.classList.add('chart');
  const data = [x, ...series.map((s) => s.values)];
  el.dataset.points = String(countPoints(data));
  if (!x.length) {
    el.append(h('p', { class: 'muted' }, 'No data in this range.'));
    return null;
  }
  const opts = {
    width: Math.max(320, el.clientWidth || 600),
    height,
    scales: { x: hours ? { time: false, range: [0, 23] } : { time: true, ...(xRange ? { range: xRange } : {}) } },
    axes: [hours ? { incrs: [1, 2, 3, 6], values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? `${String(v).padStart(2, '0')}:00` : '')) } : {}, { label: yLabel, size: 60 }],
    series: [
      {},
      ...series.map((s, i) => ({
        label: s.label,
        stroke: s.color || COLORS[i % COLORS.length],
        width: s.points ? 0 : 1.5,
        dash: s.dash,
        fill: s.fill,
        points: s.points ? { show: true, size: 7, fill: s.color || COLORS[i % COLORS.length] } : { show: false },
        paths: s.points ? () => null : s.bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined,
        spanGaps: false,
      })),
    ],
    bands: bands.map(([a, b]) => ({ series: [a, b], fill: 'rgba(37,99,235,0.12)' })),
  };
  return new uPlot(opts, data, el);
}

/// Grouped horizontal bars (server data as SVG): observed against expected per item.
export function barsSvg(el, items, { labels = ['observed', 'expected'] } = {}) {
  el.replaceChildren();
  el.classList.add('chart');
  const rowH = 34, left = 150, width = 560, right = 90;
  const max = Math.max(1e-9, ...items.flatMap((i) => [Math.abs(i.observed), Math.abs(i.expected)]));
  const total = left + width + right, tall = items.length * rowH + 24;
  const svg = s('svg', { class: 'bars', viewBox: `0 0 ${total} ${tall}`, width: '100%', role: 'img' });
  items.forEach((it, r) => {
    const y = r * rowH + 4;
    svg.append(s('text', { x: 0, y: y + 17 }, it.label));
    [[it.observed, '#dc2626', 0], [it.expected, '#94a3b8', 14]].forEach(([v, color, dy]) => {
      const w = Math.max(1, (Math.abs(v) / max) * width);
      svg.append(s('rect', { x: left, y: y + dy, width: w, height: 12, fill: color, 'data-value': v }));
      svg.append(s('text', { x: left + w + 4, y: y + dy + 10 }, fmt.num(v, 3)));
    });
  });
  const ly = items.length * rowH + 16;
  svg.append(s('rect', { x: left, y: ly - 9, width: 10, height: 10, fill: '#dc2626' }));
  svg.append(s('text', { x: left + 14, y: ly }, labels[0]));
  svg.append(s('rect', { x: left + 100, y: ly - 9, width: 10, height: 10, fill: '#94a3b8' }));
  svg.append(s('text', { x: left + 114, y: ly }, labels[1]));
  el.dataset.points = String(items.length * 2);
  el.append(svg);
}
