(function () {
  'use strict';

  // Reconnect backoff: full jitter over an exponential ceiling.
  var BACKOFF_BASE_MS = 250;
  var BACKOFF_CAP_MS = 5000;
  var CALL_TIMEOUT_MS = 10000;   // SocketCluster's default ackTimeout
  var MAX_MESSAGES = 500;        // older messages are dropped from the page

  function $(id) { return document.getElementById(id); }

  var params = new URLSearchParams(location.search);
  var defaultURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/socketcluster/';
  var url = params.get('url') || defaultURL;
  var room = params.get('room') || 'demo';
  var name = params.get('name') || ('guest-' + (1000 + Math.floor(Math.random() * 9000)));

  var ws = null;          // the current socket; older sockets' events are ignored
  var nextCid = 1;        // call ids keep counting across reconnects, like socketcluster-client
  var pending = {};       // cid -> {resolve, reject, timer}
  var attempt = 0;        // failed connects since the last handshake
  var pingTimer = null;
  var pingTimeout = 0;
  var reconnectTimer = null;
  var subscribed = false;

  function setStatus(state, detail) {
    var s = $('status');
    s.textContent = state;
    s.setAttribute('data-state', state);
    $('detail').textContent = detail || '';
    $('send').disabled = state !== 'connected';
  }

  function addLine(li) {
    var list = $('messages');
    var atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.appendChild(li);
    while (list.children.length > MAX_MESSAGES) { list.removeChild(list.firstChild); }
    if (atBottom) { list.scrollTop = list.scrollHeight; }
  }

  function span(cls, text) {
    var e = document.createElement('span');
    e.className = cls;
    e.textContent = text;
    return e;
  }

  function notice(text) {
    var li = document.createElement('li');
    li.className = 'sys';
    li.textContent = text;
    addLine(li);
  }

  function timeOf(ms) {
    var d = typeof ms === 'number' ? new Date(ms) : new Date();
    return d.toLocaleTimeString();
  }

  // renderMessage shows one published message; anything that is not our
  // {from, text} shape is shown as JSON.
  function renderMessage(data) {
    var li = document.createElement('li');
    li.className = 'msg';
    var from = data && typeof data === 'object' && typeof data.from === 'string' ? data.from : '?';
    var text = data && typeof data === 'object' && typeof data.text === 'string' ? data.text : JSON.stringify(data);
    if (from === name) { li.className += ' me'; }
    li.setAttribute('data-from', from);
    li.appendChild(span('time', timeOf(data && data.at)));
    li.appendChild(span('from', from));
    li.appendChild(span('text', text));
    addLine(li);
  }

  function send(frame) {
    if (ws && ws.readyState === 1) { ws.send(frame); return true; }
    return false;
  }

  // call sends an invoke (event with cid) and resolves with the response.
  function call(event, data) {
    return new Promise(function (resolve, reject) {
      var cid = nextCid++;
      var packet = { event: event, data: data, cid: cid };
      if (!send(JSON.stringify(packet))) { reject(new Error('not connected')); return; }
      pending[cid] = {
        resolve: resolve,
        reject: reject,
        timer: setTimeout(function () {
          delete pending[cid];
          reject(new Error(event + ' timed out'));
        }, CALL_TIMEOUT_MS)
      };
    });
  }

  function failPending(why) {
    Object.keys(pending).forEach(function (cid) {
      var p = pending[cid];
      clearTimeout(p.timer);
      p.reject(new Error(why));
    });
    pending = {};
  }

  function errorText(err) {
    if (!err) { return 'unknown error'; }
    if (typeof err === 'string') { return err; }
    if (err.name && err.message) { return err.name + ': ' + err.message; }
    return err.message || JSON.stringify(err);
  }

  // armPing restarts the watchdog: the server pings every pingInterval,
  // so silence for pingTimeout means the connection is dead.
  function armPing() {
    clearTimeout(pingTimer);
    if (pingTimeout > 0) {
      pingTimer = setTimeout(function () {
        notice('no ping from the server for ' + pingTimeout + ' ms; reconnecting');
        if (ws) { ws.close(4000, 'Server ping timed out'); }
      }, pingTimeout);
    }
  }

  function handlePacket(p) {
    if (!p || typeof p !== 'object') { return; }
    if (typeof p.rid === 'number') {
      var c = pending[p.rid];
      if (!c) { return; }
      delete pending[p.rid];
      clearTimeout(c.timer);
      if (p.error !== undefined) { c.reject(p.error); } else { c.resolve(p.data); }
      return;
    }
    if (p.event === '#publish') {
      var d = p.data;
      if (d && d.channel === room) { renderMessage(d.data); }
      return;
    }
    if (p.event === '#kickOut') {
      if (p.data && p.data.channel === room) {
        subscribed = false;
        notice('kicked out of ' + room + ': ' + (p.data.message || ''));
        setStatus('disconnected', 'kicked out of the room');
      }
      return;
    }
    // #setAuthToken, #removeAuthToken and custom events need nothing here.
  }

  function onMessage(sock, ev) {
    if (sock !== ws || typeof ev.data !== 'string') { return; }
    var d = ev.data;
    if (d === '') { send(''); armPing(); return; }          // protocol v2 ping
    if (d === '#1') { send('#2'); armPing(); return; }      // protocol v1 ping
    var v;
    try { v = JSON.parse(d); } catch (e) { return; }       // raw text: ignored
    if (Array.isArray(v)) { v.forEach(handlePacket); } else { handlePacket(v); }
  }

  function subscribe() {
    setStatus('subscribing', 'subscribing to ' + room);
    return call('#subscribe', { channel: room }).then(function () {
      subscribed = true;
      setStatus('connected', 'subscribed to ' + room);
    });
  }

  function connect() {
    reconnectTimer = null;
    setStatus('connecting', url);
    var sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      setStatus('disconnected', 'bad URL ' + url + ': ' + errorText(e));
      return;
    }
    ws = sock;
    subscribed = false;
    sock.onopen = function () {
      if (sock !== ws) { return; }
      setStatus('handshaking', url);
      pingTimeout = 0;
      call('#handshake', { authToken: null }).then(function (res) {
        if (sock !== ws) { return; }
        attempt = 0;
        $('socket-id').textContent = res && res.id ? res.id : '–';
        pingTimeout = res && typeof res.pingTimeout === 'number' ? res.pingTimeout : 0;
        armPing();
        return subscribe();
      }).catch(function (err) {
        if (sock !== ws) { return; }
        notice('connect failed: ' + errorText(err));
        sock.close(4003, 'handshake failed');
      });
    };
    sock.onmessage = function (ev) { onMessage(sock, ev); };
    sock.onerror = function () { /* onclose follows with the code */ };
    sock.onclose = function (ev) {
      if (sock !== ws) { return; }
      ws = null;
      subscribed = false;
      clearTimeout(pingTimer);
      failPending('socket closed');
      scheduleReconnect(ev.code, ev.reason);
    };
  }

  function scheduleReconnect(code, reason) {
    var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    var delay = Math.floor(Math.random() * ceiling);
    attempt++;
    setStatus('disconnected', 'closed (' + code + (reason ? ' ' + reason : '') + '); reconnecting in ' +
      (delay / 1000).toFixed(1) + 's');
    reconnectTimer = setTimeout(connect, delay);
  }

  function sendMessage() {
    var input = $('input');
    var text = input.value.trim();
    if (!text) { return; }
    if (!subscribed) { notice('not connected; message not sent'); return; }
    call('#publish', { channel: room, data: { from: name, text: text, at: Date.now() } }).then(function () {
      if (input.value.trim() === text) { input.value = ''; }
    }).catch(function (err) {
      notice('publish failed: ' + errorText(err));
    });
  }

  if (!/^wss?:\/\//i.test(url)) {
    notice('ignoring ?url=' + url + ' (want ws:// or wss://)');
    url = defaultURL;
  }
  $('frontend').textContent = url;
  $('room').textContent = room;
  $('name').textContent = name;
  $('form').addEventListener('submit', function (ev) { ev.preventDefault(); sendMessage(); });
  connect();
})();
