// Drives the demo page script with a fake DOM, fake timers and a fake
// WebSocket, checking the SocketCluster frames it sends and what it shows.
// Usage: node drive.js page.js '<location.search>' <expected ws url>
// Exits non-zero with a message on the first failed check.
'use strict';
const fs = require('fs');
const assert = require('assert');
const [script, search, wantURL] = process.argv.slice(2);

// --- fake DOM ---
function makeEl(tag) {
  return {
    tag, children: [], className: '', attrs: {}, listeners: {}, disabled: false, value: '', _text: '',
    scrollTop: 0, clientHeight: 0, scrollHeight: 0,
    get textContent() { return this._text + this.children.map((c) => c.textContent).join(''); },
    set textContent(v) { this._text = String(v); this.children = []; },
    get firstChild() { return this.children[0]; },
    appendChild(c) { this.children.push(c); return c; },
    removeChild(c) { this.children.splice(this.children.indexOf(c), 1); return c; },
    setAttribute(k, v) { this.attrs[k] = String(v); },
    getAttribute(k) { return this.attrs[k]; },
    addEventListener(ev, fn) { this.listeners[ev] = fn; },
  };
}
const byId = {};
global.document = { getElementById: (id) => byId[id] || (byId[id] = makeEl('#' + id)), createElement: makeEl };
const $ = global.document.getElementById;
global.location = { protocol: 'http:', host: '127.0.0.1:8000', search };

// --- fake timers ---
let timers = new Map();
let nextTimer = 1;
global.setTimeout = (fn, ms) => { const id = nextTimer++; timers.set(id, { fn, ms }); return id; };
global.clearTimeout = (id) => { timers.delete(id); };
function fire(pred, what) {
  for (const [id, t] of timers) {
    if (pred(t.ms)) { timers.delete(id); t.fn(); return t.ms; }
  }
  throw new Error('no timer for ' + what + '; have ' + JSON.stringify([...timers.values()].map((t) => t.ms)));
}

// --- fake WebSocket ---
const sockets = [];
class FakeWS {
  constructor(url) { this.url = url; this.sent = []; this.readyState = 0; sockets.push(this); }
  send(f) { assert.strictEqual(this.readyState, 1, 'send on a socket that is not open'); this.sent.push(f); }
  close(code, reason) { this.readyState = 3; this.closedWith = code; this.onclose({ code, reason: reason || '' }); }
  open() { this.readyState = 1; this.onopen(); }
  recv(data) { this.onmessage({ data: typeof data === 'string' ? data : JSON.stringify(data) }); }
  last() { return this.sent[this.sent.length - 1]; }
  lastJSON() { return JSON.parse(this.last()); }
}
global.WebSocket = FakeWS;

const tick = () => new Promise((r) => setImmediate(r));
const status = () => $('status').textContent;

(async () => {
  new Function(fs.readFileSync(script, 'utf8'))();
  assert.strictEqual(sockets.length, 1, 'one socket at load');
  let ws = sockets[0];
  assert.strictEqual(ws.url, wantURL, 'socket URL');
  assert.strictEqual($('frontend').textContent, wantURL, '#frontend shows the URL');
  assert.strictEqual(status(), 'connecting');
  assert.strictEqual($('send').disabled, true, 'send disabled before connecting');

  // Handshake.
  ws.open();
  assert.strictEqual(status(), 'handshaking');
  assert.deepStrictEqual(ws.lastJSON(), { event: '#handshake', data: { authToken: null }, cid: 1 });
  ws.recv({ rid: 1, data: { id: 'sock-1', pingTimeout: 30000, isAuthenticated: false } });
  await tick();
  assert.strictEqual($('socket-id').textContent, 'sock-1');
  assert.strictEqual(status(), 'subscribing');
  const room = $('room').textContent;
  assert.deepStrictEqual(ws.lastJSON(), { event: '#subscribe', data: { channel: room }, cid: 2 });
  ws.recv([{ rid: 2 }]); // a batch
  await tick();
  assert.strictEqual(status(), 'connected');
  assert.strictEqual($('status').getAttribute('data-state'), 'connected');
  assert.strictEqual($('send').disabled, false, 'send enabled once subscribed');

  // Pings, both protocol versions.
  ws.recv('');
  assert.strictEqual(ws.last(), '', "'' answered with ''");
  ws.recv('#1');
  assert.strictEqual(ws.last(), '#2', "'#1' answered with '#2'");
  ws.recv('not json'); // ignored

  // Deliveries: ours is shown, another channel's is not; hostile text stays text.
  ws.recv({ event: '#publish', data: { channel: room, data: { from: 'bob', text: '<b>hi</b>', at: 1 } } });
  ws.recv({ event: '#publish', data: { channel: 'other', data: { from: 'eve', text: 'nope' } } });
  ws.recv({ event: '#publish', data: { channel: room, data: 42 } });
  const msgs = $('messages').children.filter((li) => li.className.startsWith('msg'));
  assert.strictEqual(msgs.length, 2, 'two messages shown');
  assert.strictEqual(msgs[0].getAttribute('data-from'), 'bob');
  assert.ok(msgs[0].textContent.includes('<b>hi</b>'), 'text shown verbatim');
  assert.ok(msgs[1].textContent.endsWith('42'), 'non-chat data shown as JSON');

  // Publish.
  $('input').value = 'hello';
  $('form').listeners.submit({ preventDefault() {} });
  const pub = ws.lastJSON();
  assert.strictEqual(pub.event, '#publish');
  assert.strictEqual(pub.cid, 3);
  assert.strictEqual(pub.data.channel, room);
  assert.strictEqual(pub.data.data.text, 'hello');
  assert.strictEqual(pub.data.data.from, $('name').textContent);
  ws.recv({ rid: 3 });
  await tick();
  assert.strictEqual($('input').value, '', 'input cleared after the ack');

  // A failed publish is reported.
  $('input').value = 'again';
  $('form').listeners.submit({ preventDefault() {} });
  ws.recv({ rid: 4, error: { name: 'InvalidActionError', message: 'Client publish feature is disabled' } });
  await tick();
  const sys = $('messages').children.filter((li) => li.className === 'sys');
  assert.ok(sys.some((li) => li.textContent.includes('Client publish feature is disabled')), 'publish error shown');

  // Disconnect: reconnect with jittered backoff, same cid counter, resubscribe.
  ws.close(1006);
  assert.strictEqual(status(), 'disconnected');
  assert.strictEqual($('send').disabled, true);
  const delay = fire((ms) => ms < 250, 'first reconnect (under 250ms)');
  assert.ok(delay >= 0 && delay < 250, 'first backoff under 250ms, got ' + delay);
  assert.strictEqual(sockets.length, 2, 'reconnected');
  ws = sockets[1];
  ws.open();
  assert.deepStrictEqual(ws.lastJSON(), { event: '#handshake', data: { authToken: null }, cid: 5 });
  ws.recv({ rid: 5, data: { id: 'sock-2', pingTimeout: 1000 } });
  await tick();
  assert.deepStrictEqual(ws.lastJSON(), { event: '#subscribe', data: { channel: room }, cid: 6 });
  ws.recv({ rid: 6 });
  await tick();
  assert.strictEqual(status(), 'connected');

  // Server silence for pingTimeout closes the socket (4000) and reconnects.
  fire((ms) => ms === 1000, 'ping watchdog');
  assert.strictEqual(ws.closedWith, 4000, 'closed with 4000 on ping timeout');
  assert.strictEqual(status(), 'disconnected');

  // Backoff ceilings grow but stay capped: fail several connects in a row.
  for (let i = 0; i < 8; i++) {
    fire((ms) => ms < 5000 && ms !== 10000, 'reconnect ' + i);
    ws = sockets[sockets.length - 1];
    ws.close(1006);
  }
  for (const t of timers.values()) { assert.ok(t.ms <= 5000 || t.ms === 10000, 'backoff capped at 5s, got ' + t.ms); }

  // A handshake error closes with 4003.
  fire((ms) => ms <= 5000, 'reconnect before handshake error');
  ws = sockets[sockets.length - 1];
  ws.open();
  const hs = ws.lastJSON();
  ws.recv({ rid: hs.cid, error: { name: 'ScBlocked', message: 'blocked', statusCode: 4008 } });
  await tick();
  assert.strictEqual(ws.closedWith, 4003, 'handshake failure closes with 4003');

  console.log('ok');
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
