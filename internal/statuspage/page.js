(function () {
  'use strict';

  var POLL_MS = 1000;
  var DASH = '\u2013';
  var ROLE_ORDER = { state: 0, broker: 1, frontend: 2 };

  function $(id) { return document.getElementById(id); }

  // norm makes "messages_in", "MessagesIn" and "messages-in" the same key.
  function norm(k) { return String(k).toLowerCase().replace(/[_\-\s]/g, ''); }

  // pick returns the first field of obj named (after norm) like one of names.
  function pick(obj, names) {
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) { return undefined; }
    var byNorm = {};
    Object.keys(obj).forEach(function (k) {
      var n = norm(k);
      if (!(n in byNorm)) { byNorm[n] = obj[k]; }
    });
    for (var i = 0; i < names.length; i++) {
      var v = byNorm[norm(names[i])];
      if (v !== undefined && v !== null) { return v; }
    }
    return undefined;
  }

  // list turns an array, or an object keyed by id, into an array of objects.
  function list(v) {
    if (Array.isArray(v)) { return v; }
    if (v && typeof v === 'object') {
      return Object.keys(v).map(function (k) {
        var m = v[k];
        if (m && typeof m === 'object' && pick(m, ['id', 'nodeId']) === undefined) {
          var copy = { id: k };
          Object.keys(m).forEach(function (f) { copy[f] = m[f]; });
          return copy;
        }
        return m;
      });
    }
    return [];
  }

  function isNum(v) { return typeof v === 'number' && isFinite(v); }

  function fmt(v) {
    if (v === undefined || v === null || v === '') { return DASH; }
    if (isNum(v)) { return v.toLocaleString(); }
    if (typeof v === 'boolean') { return v ? 'yes' : 'no'; }
    if (typeof v === 'object') { return JSON.stringify(v); }
    return String(v);
  }

  // count reads a number, or the length of a list of names.
  function count(v) {
    if (isNum(v)) { return v; }
    if (Array.isArray(v)) { return v.length; }
    if (v && typeof v === 'object') { return Object.keys(v).length; }
    return undefined;
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }

  function brokerLabel(b) {
    if (typeof b === 'string') { return b; }
    var id = pick(b, ['id', 'nodeId', 'name']);
    var addr = pick(b, ['addr', 'address']);
    if (id !== undefined && addr !== undefined && String(id) !== String(addr)) { return id + ' @ ' + addr; }
    return fmt(id !== undefined ? id : addr);
  }

  function brokerList(v) {
    if (!Array.isArray(v)) { return fmt(v); }
    return v.map(brokerLabel).join(', ') || DASH;
  }

  // ago formats a timestamp (RFC 3339 string, or Unix ms/s) as an age.
  function ago(v) {
    var t;
    if (typeof v === 'string') { t = Date.parse(v); }
    else if (isNum(v)) { t = v > 1e12 ? v : v * 1000; }
    if (!isNum(t) || isNaN(t)) { return undefined; }
    var s = Math.max(0, (Date.now() - t) / 1000);
    return s < 60 ? s.toFixed(1) + 's ago' : Math.round(s / 60) + 'min ago';
  }

  var prev = {}; // member id -> {in, out, t}: for message rates

  function rate(id, which, v, now) {
    var p = prev[id];
    if (!p || !isNum(v) || !isNum(p[which]) || now <= p.t || v < p[which]) { return ''; }
    return Math.round((v - p[which]) * 1000 / (now - p.t)).toLocaleString() + '/s';
  }

  function health(m) {
    var connected = pick(m, ['connected', 'linkUp', 'link']);
    var healthy = pick(m, ['healthy', 'health', 'alive']);
    var dead = pick(m, ['gossipDead', 'dead']);
    if (typeof healthy === 'string') { return { text: healthy, cls: /ok|healthy|alive|up/i.test(healthy) ? 'ok' : 'bad' }; }
    if (connected === false) { return { text: 'disconnected', cls: 'bad' }; }
    if (dead === true) { return { text: 'gossip: dead', cls: 'bad' }; }
    if (healthy === false) { return { text: 'unhealthy', cls: 'bad' }; }
    if (healthy === true || connected === true) { return { text: 'healthy', cls: 'ok' }; }
    return { text: DASH, cls: 'unknown' };
  }

  function renderState(st) {
    $('state-node').textContent = fmt(pick(st, ['node', 'nodeId', 'id']));
    var done = pick(st, ['startupDone']);
    $('state-startup').textContent = done === undefined ? DASH : (done ? 'done' : 'collecting members');
    $('state-max-version').textContent = fmt(pick(st, ['maxVersion']));
    $('state-last-reshard').textContent = fmt(ago(pick(st, ['lastReshard'])));
    // Nodes report the digest of their channel rules; more than one digest
    // among connected nodes means they enforce different rules.
    var digests = pick(st, ['rulesDigests']);
    var n = count(digests);
    var rules = $('state-rules');
    if (pick(st, ['rulesMismatch']) === true) {
      rules.textContent = 'MISMATCH: ' + fmt(n) + ' digests';
      rules.className = 'bad';
    } else if (n === 1) {
      rules.textContent = 'same on all nodes (' + shortDigest(pick(st, ['rulesDigest']) || Object.keys(digests)[0]) + ')';
      rules.className = 'ok';
    } else {
      rules.textContent = DASH;
      rules.className = '';
    }
  }

  function shortDigest(d) { return d ? String(d).slice(0, 12) : DASH; }

  function renderRing(st) {
    var ring = pick(st, ['ring', 'committedRing', 'committed']);
    var version = pick(ring, ['version', 'ringVersion']);
    if (version === undefined) { version = pick(st, ['ringVersion', 'version']); }
    var brokers = list(pick(ring, ['brokers', 'members']));
    $('ring-version').textContent = fmt(version);
    $('ring-count').textContent = ring ? String(brokers.length) : DASH;
    var ul = $('ring-brokers');
    ul.replaceChildren();
    brokers.forEach(function (b) { ul.appendChild(el('li', brokerLabel(b))); });
  }

  function renderReshard(st) {
    var box = $('reshard');
    var r = pick(st, ['reshard', 'reshardInProgress', 'resharding', 'inProgress']);
    box.replaceChildren();
    if (!r || typeof r !== 'object' || pick(r, ['version', 'phase']) === undefined) {
      box.className = 'muted';
      box.textContent = 'none in progress';
      return;
    }
    box.className = 'warn';
    var prepared = count(pick(r, ['prepared', 'preparedCount']));
    var needed = count(pick(r, ['needed', 'expected', 'waitingFor', 'frontends', 'total']));
    var t = el('table', undefined, 'kv');
    [['version', fmt(pick(r, ['version', 'ringVersion']))],
     ['phase', fmt(pick(r, ['phase', 'state']))],
     ['prepared', fmt(prepared) + ' / ' + fmt(needed)],
     ['started', fmt(ago(pick(r, ['started', 'startedAt', 'since'])))],
     ['brokers', brokerList(pick(pick(r, ['ring']) || r, ['brokers']))]].forEach(function (row) {
      var tr = el('tr');
      tr.appendChild(el('th', row[0]));
      tr.appendChild(el('td', row[1]));
      t.appendChild(tr);
    });
    box.appendChild(t);
    if (isNum(prepared) && isNum(needed) && needed > 0) {
      var bar = el('div', undefined, 'bar');
      var fill = el('div');
      fill.style.width = Math.min(100, 100 * prepared / needed) + '%';
      bar.appendChild(fill);
      box.appendChild(bar);
    }
  }

  function renderMembers(st, now) {
    var members = list(pick(st, ['members', 'nodes']));
    members = members.filter(function (m) { return m && typeof m === 'object'; });
    members.sort(function (a, b) {
      var ra = ROLE_ORDER[String(pick(a, ['role']))], rb = ROLE_ORDER[String(pick(b, ['role']))];
      ra = ra === undefined ? 9 : ra; rb = rb === undefined ? 9 : rb;
      if (ra !== rb) { return ra - rb; }
      return String(pick(a, ['id', 'nodeId'])).localeCompare(String(pick(b, ['id', 'nodeId'])), undefined, { numeric: true });
    });
    var tbody = $('members');
    tbody.replaceChildren();
    var totals = { broker: 0, frontend: 0, conns: undefined, in: undefined, out: undefined };
    function add(key, v) { if (isNum(v)) { totals[key] = (totals[key] || 0) + v; } }
    var next = {};
    members.forEach(function (m) {
      var id = pick(m, ['id', 'nodeId', 'node', 'name']);
      var role = pick(m, ['role']);
      var stats = pick(m, ['stats', 'lastStats', 'last']) || m;
      var conns = pick(stats, ['connections', 'conns', 'clients']);
      var subs = pick(stats, ['subscriptions', 'subs', 'channels']);
      var mIn = pick(stats, ['messagesIn', 'msgsIn', 'in']);
      var mOut = pick(stats, ['messagesOut', 'msgsOut', 'out']);
      var rv = pick(stats, ['ringVersion']);
      if (rv === undefined) { rv = pick(m, ['ringVersion']); }
      if (role === 'broker' || role === 'frontend') { totals[role]++; }
      if (role === 'frontend') { add('conns', conns); add('in', mIn); add('out', mOut); }
      var key = String(id);
      next[key] = { in: mIn, out: mOut, t: now };

      var tr = el('tr');
      tr.dataset.id = key;
      tr.appendChild(el('td', fmt(role)));
      tr.appendChild(el('td', fmt(id), 'mono'));
      tr.appendChild(el('td', fmt(pick(m, ['addr', 'address'])), 'mono'));
      var h = health(m);
      tr.appendChild(el('td', h.text, h.cls));
      var inRing = pick(m, ['inRing']);
      tr.appendChild(el('td', inRing === undefined ? DASH : (inRing ? 'yes' : 'no')));
      var dr = pick(m, ['draining']), lv = pick(m, ['leaving']);
      // Absent flags mean false: the state server omits them when unset.
      var drText = lv ? 'leaving' : (dr ? 'draining' : 'no');
      tr.appendChild(el('td', drText, dr || lv ? 'warn' : ''));
      tr.appendChild(el('td', fmt(conns), 'num'));
      tr.appendChild(el('td', fmt(subs), 'num'));
      [['in', mIn], ['out', mOut]].forEach(function (pair) {
        var td = el('td', fmt(pair[1]), 'num');
        var r = rate(key, pair[0], pair[1], now);
        if (r) { td.appendChild(el('span', r, 'rate')); }
        tr.appendChild(td);
      });
      tr.appendChild(el('td', fmt(rv), 'num'));
      var differ = pick(m, ['rulesDiffer']) === true;
      tr.appendChild(el('td', shortDigest(pick(m, ['rulesDigest'])) + (differ ? ' (differs)' : ''), differ ? 'mono bad' : 'mono'));
      tbody.appendChild(tr);
    });
    prev = next;
    if (members.length === 0) {
      var tr = el('tr');
      var td = el('td', 'no members reported', 'muted');
      td.colSpan = 12;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    $('total-brokers').textContent = fmt(totals.broker);
    $('total-frontends').textContent = fmt(totals.frontend);
    $('total-connections').textContent = fmt(totals.conns);
    $('total-in').textContent = fmt(totals.in);
    $('total-out').textContent = fmt(totals.out);
  }

  function setConn(ok, text) {
    var c = $('conn');
    c.className = 'pill ' + (ok ? 'ok' : 'bad');
    c.textContent = text;
  }

  function render(st) {
    var now = Date.now();
    renderState(st);
    renderRing(st);
    renderReshard(st);
    renderMembers(st, now);
    $('raw').textContent = JSON.stringify(st, null, 2);
    $('updated').textContent = 'updated ' + new Date(now).toLocaleTimeString();
  }

  function poll() {
    var ctl = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, 3000) : null;
    fetch('status', { cache: 'no-store', signal: ctl ? ctl.signal : undefined })
      .then(function (resp) {
        if (!resp.ok) { throw new Error('/status answered ' + resp.status); }
        return resp.json();
      })
      .then(function (st) {
        render(st);
        setConn(true, 'state server reachable');
        $('error').hidden = true;
      })
      .catch(function (err) {
        setConn(false, 'state server unreachable');
        var e = $('error');
        e.textContent = 'Cannot read /status: ' + (err && err.message ? err.message : err) +
          '. Showing the last data received; retrying every second.';
        e.hidden = false;
      })
      .then(function () {
        if (timer) { clearTimeout(timer); }
        setTimeout(poll, POLL_MS);
      });
  }

  poll();
})();
