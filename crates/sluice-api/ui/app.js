// The router of the Sluice UI: hash routes (#/overview, #/anomalies/12, #/clients/k?kind=ip, ...)
// so the server only ever serves /ui, and a sign-in page that keeps the token in sessionStorage.

import { session, signIn, signOut, ApiProblem } from './api.js';
import { h } from './charts.js';
import * as pages from './pages.js';

const main = document.getElementById('main');

function signInPage() {
  const input = h('input', { type: 'password', name: 'token', id: 'token', placeholder: 'sk_…', autocomplete: 'off', required: true });
  const out = h('div');
  const form = h('form', { class: 'card signin', id: 'signin' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste an API token (analyst or admin; create one with ', h('code', {}, 'sluice token create'),
      '). It is kept in this browser tab only and sent as a bearer token to the API.'),
    input, h('button', { class: 'primary', type: 'submit' }, 'Sign in'), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    out.replaceChildren();
    try {
      await signIn(input.value.trim());
      // Go on to the page asked for (hashchange only fires when the hash changes).
      if (!location.hash || location.hash === '#/signin') location.hash = '#/overview';
      else route();
    } catch (err) {
      out.append(h('p', { class: 'error' }, err.status === 401 ? 'That token is not valid (unknown or revoked).' : err.message));
    }
  });
  main.replaceChildren(form);
  input.focus();
  document.body.dataset.ready = 'signin';
}

function chrome() {
  const s = session();
  document.getElementById('nav').hidden = !s;
  document.getElementById('signout').hidden = !s;
  document.getElementById('who').textContent = s ? `${s.name} (${s.role})` : '';
  document.body.dataset.role = s ? s.role : '';
  const page = location.hash.slice(2).split(/[/?]/)[0];
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === page);
}

async function route() {
  chrome();
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  if (!session()) { signInPage(); return; }
  document.body.dataset.ready = '';
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    switch (parts[0]) {
      case 'anomalies':
        await (parts[1] ? pages.anomaly(main, parts[1]) : pages.anomalies(main, params));
        break;
      case 'clients': await pages.client(main, parts.slice(1).join('/'), params); break;
      case 'suggestions': await pages.suggestions(main, params); break;
      case 'policy': await pages.policy(main, params); break;
      case 'signin': signOut(); chrome(); signInPage(); return;
      default: await pages.overview(main);
    }
  } catch (e) {
    main.append(h('p', { class: 'error' }, e instanceof ApiProblem ? e.message : `error: ${e.message}`));
  }
  // Every chart is drawn and every request answered: tests and screenshots wait for this.
  document.body.dataset.ready = parts[0] || 'overview';
}

document.getElementById('signout').addEventListener('click', () => { signOut(); location.hash = '#/signin'; });
document.getElementById('client-search').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = new FormData(e.target).get('client').trim();
  if (v) location.hash = `#/clients/${encodeURIComponent(v)}`;
});
window.addEventListener('hashchange', route);
route();
