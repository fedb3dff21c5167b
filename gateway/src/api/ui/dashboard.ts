// The live dashboard at /ui: plain HTML, CSS and one script, embedded here so
// that the compiled gateway serves them without the source tree (see
// api/static.ts). The page itself carries no data: the script polls the REST
// API once a second (GET /api/v1/config for listeners and sessions, GET
// /api/v1/clusters?recursive=true for endpoints), computes byte and packet
// rates from the counter deltas between two polls, and deletes a session with
// DELETE /api/v1/sessions/{name}.
//
// Object names come from users, so no value ever reaches innerHTML: the
// script builds nodes with createElement/textContent only. When the API
// answers 401 the page asks for the bearer token and keeps it in this tab's
// sessionStorage.
//
// The script is a template literal: it must not contain backticks or "${".

export const UI_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>l7mp gateway</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/app.css">
</head>
<body>
<header>
  <h1>l7mp gateway</h1>
  <span id="version"></span>
  <span id="status" role="status" aria-live="polite">connecting…</span>
  <button type="button" id="forget-token" hidden>Forget token</button>
  <a href="/api/v1/docs">API docs</a>
</header>
<form id="auth" hidden>
  <p>This controller requires a bearer token. It is sent as <code>Authorization: Bearer …</code>
  with every API call and kept in this browser tab only (sessionStorage).</p>
  <label>API token <input type="password" id="token" autocomplete="off" spellcheck="false" required></label>
  <button type="submit">Use token</button>
  <span id="auth-error"></span>
</form>
<main>
  <section>
    <h2>Sessions <span class="count" id="session-count"></span></h2>
    <table id="sessions">
      <thead><tr>
        <th>name</th><th>listener</th><th>destination</th><th>status</th><th>age</th>
        <th title="received from the client, sent towards the cluster">in bytes</th><th>in B/s</th><th>in pkt/s</th>
        <th title="sent back to the client">out bytes</th><th>out B/s</th><th>out pkt/s</th><th></th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <p class="empty" id="no-sessions">No sessions.</p>
  </section>
  <section>
    <h2>Listeners <span class="count" id="listener-count"></span></h2>
    <table id="listeners">
      <thead><tr><th>name</th><th>protocol</th><th>address</th><th>port</th><th>rule list</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Clusters <span class="count" id="cluster-count"></span></h2>
    <table id="clusters">
      <thead><tr><th>name</th><th>protocol</th><th>load balancer</th><th>endpoints</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script src="/ui/app.js"></script>
</body>
</html>
`;

export const UI_CSS = `:root { color-scheme: light dark; --muted: #777; --bad: #c0392b; --ok: #2e7d32; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; }
header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; border-bottom: 1px solid #8884; flex-wrap: wrap; }
header h1 { font-size: 1.2em; margin: 0; }
header a { margin-left: auto; }
#version, .count, .empty { color: var(--muted); }
#status.error, #auth-error { color: var(--bad); }
#status.ok { color: var(--ok); }
form#auth { padding: .6em 1em; border-bottom: 1px solid #8884; }
main { padding: 0 1em 2em; }
h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .2em .6em; border-bottom: 1px solid #8883; vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { word-break: break-all; }
ul.endpoints { margin: 0; padding-left: 1.1em; }
li.unhealthy, li.ejected { color: var(--bad); }
button { font: inherit; }
`;

export const UI_JS = `'use strict';
(function () {
  var POLL_MS = 1000;
  var TOKEN_KEY = 'l7mp-api-token';
  /** session name -> {row, cells, last: {t, inB, inP, outB, outP}} */
  var sessions = new Map();
  var lastListeners = '';
  var lastClusters = '';
  var waitingForToken = false;
  var timer = 0;

  function byId(id) { return document.getElementById(id); }

  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(v) {
    try { if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* private mode */ }
    byId('forget-token').hidden = !v;
  }

  /** An element with text children only: never HTML from data. */
  function el(tag, props, children) {
    var e = document.createElement(tag);
    if (props) for (var k in props) {
      if (k === 'class') e.className = props[k];
      else if (k.indexOf('data-') === 0) e.setAttribute(k, String(props[k]));
      else e[k] = props[k];
    }
    if (children) for (var i = 0; i < children.length; i++) {
      var c = children[i];
      e.append(c instanceof Node ? c : document.createTextNode(c === undefined || c === null ? '' : String(c)));
    }
    return e;
  }

  function status(text, kind) {
    var s = byId('status');
    s.textContent = text;
    s.className = kind || '';
  }

  function UnauthorizedError(message) { this.message = message; }

  async function api(method, path) {
    var headers = { accept: 'application/json' };
    var token = getToken();
    if (token) headers.authorization = 'Bearer ' + token;
    var res = await fetch(path, { method: method, headers: headers, cache: 'no-store', credentials: 'omit' });
    var text = await res.text();
    var body;
    try { body = JSON.parse(text); } catch (e) { body = undefined; }
    var why = body && typeof body.content === 'string' ? body.content : text.slice(0, 200);
    if (res.status === 401) throw new UnauthorizedError(why);
    if (!res.ok) throw new Error(method + ' ' + path + ': ' + res.status + ' ' + why);
    return body;
  }

  function fmtInt(n) { return typeof n === 'number' ? n.toLocaleString('en-US') : '–'; }
  function fmtRate(r, unit) {
    if (typeof r !== 'number' || !isFinite(r)) return '–';
    if (unit === 'B/s') {
      if (r >= 1048576) return (r / 1048576).toFixed(2) + ' MiB/s';
      if (r >= 1024) return (r / 1024).toFixed(1) + ' KiB/s';
    }
    return (r < 10 ? r.toFixed(1) : Math.round(r).toString()) + ' ' + unit;
  }
  function fmtAge(ms) {
    if (!(ms >= 0)) return '–';
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }
  function num(v) { return typeof v === 'number' && isFinite(v) ? v : 0; }
  function str(v) { return v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v); }

  // ---------------------------------------------------------------- sessions

  var SESSION_FIELDS = ['name', 'listener', 'destination', 'status', 'age', 'in-bytes', 'in-bps', 'in-pps', 'out-bytes', 'out-bps', 'out-pps'];
  var NUMERIC = { 'in-bytes': 1, 'in-bps': 1, 'in-pps': 1, 'out-bytes': 1, 'out-bps': 1, 'out-pps': 1 };

  function newSessionRow(name) {
    var cells = {};
    var row = el('tr', { 'data-session': name });
    SESSION_FIELDS.forEach(function (f) {
      var td = el('td', { 'data-field': f, class: NUMERIC[f] ? 'num' : f === 'name' ? 'name' : '' });
      cells[f] = td;
      row.append(td);
    });
    cells.name.textContent = name;
    var del = el('button', { type: 'button', class: 'delete', 'data-session': name, title: 'DELETE /api/v1/sessions/{name}' }, ['Delete']);
    row.append(el('td', null, [del]));
    return { row: row, cells: cells, last: undefined };
  }

  function setCell(td, text, value) {
    if (td.textContent !== text) td.textContent = text;
    if (value !== undefined) td.setAttribute('data-value', String(value));
  }

  function renderSessions(list, now) {
    var tbody = byId('sessions').tBodies[0];
    var seen = new Set();
    list.forEach(function (s) {
      if (!s || typeof s.name !== 'string') return;
      seen.add(s.name);
      var entry = sessions.get(s.name);
      if (!entry) {
        entry = newSessionRow(s.name);
        sessions.set(s.name, entry);
        tbody.append(entry.row);
      }
      var c = s.counters || {};
      var cur = {
        t: now,
        inB: num(c.ingress && c.ingress.bytes), inP: num(c.ingress && c.ingress.packets),
        outB: num(c.egress && c.egress.bytes), outP: num(c.egress && c.egress.packets),
      };
      var last = entry.last;
      var dt = last ? (cur.t - last.t) / 1000 : 0;
      function rate(k) { return dt > 0 ? Math.max(0, cur[k] - last[k]) / dt : undefined; }
      var cells = entry.cells;
      setCell(cells.listener, str(s.source && s.source.origin));
      setCell(cells.destination, str(s.destination && (s.destination.origin || s.destination.status)));
      setCell(cells.status, str(s.status));
      setCell(cells.age, fmtAge(Date.now() - Date.parse(s.started)));
      setCell(cells['in-bytes'], fmtInt(cur.inB), cur.inB);
      setCell(cells['out-bytes'], fmtInt(cur.outB), cur.outB);
      var r;
      r = rate('inB'); setCell(cells['in-bps'], fmtRate(r, 'B/s'), r === undefined ? '' : r);
      r = rate('inP'); setCell(cells['in-pps'], fmtRate(r, 'pkt/s'), r === undefined ? '' : r);
      r = rate('outB'); setCell(cells['out-bps'], fmtRate(r, 'B/s'), r === undefined ? '' : r);
      r = rate('outP'); setCell(cells['out-pps'], fmtRate(r, 'pkt/s'), r === undefined ? '' : r);
      entry.last = cur;
    });
    sessions.forEach(function (entry, name) {
      if (!seen.has(name)) { entry.row.remove(); sessions.delete(name); }
    });
    byId('session-count').textContent = '(' + sessions.size + ')';
    byId('no-sessions').hidden = sessions.size > 0;
  }

  // ------------------------------------------------------ listeners, clusters

  function replaceRows(id, rows) {
    byId(id).tBodies[0].replaceChildren.apply(byId(id).tBodies[0], rows);
  }

  function renderListeners(list) {
    var key = JSON.stringify(list);
    if (key === lastListeners) return;
    lastListeners = key;
    replaceRows('listeners', list.map(function (l) {
      var spec = (l && l.spec) || {};
      return el('tr', { 'data-listener': str(l && l.name) }, [
        el('td', { class: 'name' }, [str(l && l.name)]),
        el('td', null, [str(spec.protocol)]),
        el('td', null, [str(spec.address !== undefined ? spec.address : spec.filename)]),
        el('td', { class: 'num' }, [str(spec.port)]),
        el('td', null, [str(l && l.rules)]),
      ]);
    }));
    byId('listener-count').textContent = '(' + list.length + ')';
  }

  function renderClusters(list) {
    var key = JSON.stringify(list);
    if (key === lastClusters) return;
    lastClusters = key;
    replaceRows('clusters', list.map(function (c) {
      var spec = (c && c.spec) || {};
      var eps = Array.isArray(c && c.endpoints) ? c.endpoints : [];
      var items = eps.map(function (e) {
        var es = (e && e.spec) || {};
        var where = es.address === '<VIRTUAL>' ? 'virtual' : str(es.address !== undefined ? es.address : es.filename) +
          (es.port !== undefined ? ':' + str(es.port) : spec.port !== undefined ? ':' + str(spec.port) : '');
        // Health shows when the cluster has health settings; unhealthy and ejected endpoints stand out.
        var st = e && e.status && typeof e.status === 'object' ? e.status : undefined;
        if (!st || typeof st.health !== 'string') return el('li', { 'data-endpoint': str(e && e.name) }, [str(e && e.name) + ' → ' + where]);
        var bad = st.health === 'unhealthy' || st.health === 'ejected';
        return el('li', {
          'data-endpoint': str(e && e.name), 'data-health': str(st.health), class: bad ? st.health : '',
          title: str(st.reason !== undefined ? st.reason : '') + (st.last_check !== undefined ? ' (checked ' + str(st.last_check) + ')' : ''),
        }, [str(e && e.name) + ' → ' + where + ' [' + str(st.health) + ']']);
      });
      var lb = c && c.loadbalancer && typeof c.loadbalancer === 'object' ? c.loadbalancer.policy : c && c.loadbalancer;
      return el('tr', { 'data-cluster': str(c && c.name) }, [
        el('td', { class: 'name' }, [str(c && c.name)]),
        el('td', null, [str(spec.protocol)]),
        el('td', null, [str(lb)]),
        el('td', null, [el('ul', { class: 'endpoints' }, items)]),
      ]);
    }));
    byId('cluster-count').textContent = '(' + list.length + ')';
  }

  // ------------------------------------------------------------------- polling

  function askForToken(message) {
    waitingForToken = true;
    byId('auth').hidden = false;
    byId('auth-error').textContent = getToken() ? message : '';
    status('waiting for the API token', 'error');
    byId('token').focus();
  }

  async function poll() {
    timer = 0;
    if (waitingForToken) return;
    try {
      var cfg = await api('GET', '/api/v1/config');
      var now = performance.now();
      var clusters = await api('GET', '/api/v1/clusters?recursive=true');
      renderSessions(Array.isArray(cfg.sessions) ? cfg.sessions : [], now);
      renderListeners(Array.isArray(cfg.listeners) ? cfg.listeners : []);
      renderClusters(Array.isArray(clusters) ? clusters : []);
      byId('version').textContent = cfg.admin && cfg.admin.version ? 'v' + str(cfg.admin.version) : '';
      status('live · updated ' + new Date().toLocaleTimeString(), 'ok');
    } catch (err) {
      if (err instanceof UnauthorizedError) { askForToken(err.message); return; }
      status('API unreachable: ' + (err && err.message ? err.message : String(err)), 'error');
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function pollSoon() {
    if (timer) clearTimeout(timer);
    timer = setTimeout(poll, 0);
  }

  byId('auth').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var v = byId('token').value.trim();
    if (!v) return;
    setToken(v);
    byId('token').value = '';
    byId('auth').hidden = true;
    waitingForToken = false;
    status('connecting…');
    pollSoon();
  });

  byId('forget-token').addEventListener('click', function () {
    setToken('');
    sessions.forEach(function (e) { e.row.remove(); });
    sessions.clear();
    lastListeners = lastClusters = '';
    replaceRows('listeners', []);
    replaceRows('clusters', []);
    pollSoon();
  });

  byId('sessions').addEventListener('click', async function (ev) {
    var btn = ev.target instanceof Element ? ev.target.closest('button.delete') : null;
    if (!btn) return;
    var name = btn.getAttribute('data-session');
    if (!name || !window.confirm('Delete session "' + name + '"?')) return;
    btn.disabled = true;
    try {
      await api('DELETE', '/api/v1/sessions/' + encodeURIComponent(name));
      var entry = sessions.get(name);
      if (entry) { entry.row.remove(); sessions.delete(name); }
      status('session deleted: ' + name, 'ok');
    } catch (err) {
      btn.disabled = false;
      if (err instanceof UnauthorizedError) { askForToken(err.message); return; }
      status('delete failed: ' + (err && err.message ? err.message : String(err)), 'error');
    }
  });

  setToken(getToken());
  poll();
})();
`;
