// trainhook dashboard: live updates without reloading. It listens to
// /api/events (Server-Sent Events) and, when a model or a notification
// changes, fetches the server-rendered fragment of what changed and swaps
// it in, so the pages have one renderer: the server's templates. No inline script anywhere.
(function () {
  'use strict';

  var body = document.body;
  var liveLine = document.getElementById('live-status');
  // The server's clock, so relative times do not drift with the browser's.
  var skew = 0;
  if (body.dataset.now) {
    var serverNow = Date.parse(body.dataset.now);
    if (!isNaN(serverNow)) skew = serverNow - Date.now();
  }
  function now() { return Date.now() + skew; }

  // ---- Times: "3 min ago" and "running 2 min 5 s", kept current. ----
  function span(ms) {
    var s = Math.round(ms / 1000);
    if (s < 60) return s + ' s';
    if (s < 600) {
      var m = Math.floor(s / 60), r = s % 60;
      return r ? m + ' min ' + r + ' s' : m + ' min';
    }
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 172800) {
      var h = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60);
      return h + ' h ' + (mm < 10 ? '0' : '') + mm + ' min';
    }
    return Math.floor(s / 86400) + ' days ' + Math.floor((s % 86400) / 3600) + ' h';
  }
  function ago(ms) {
    if (ms < 0) return 'in ' + span(-ms);
    if (ms < 1000) return 'just now';
    return span(ms) + ' ago';
  }
  function tick() {
    var t = now();
    document.querySelectorAll('time[data-rel]').forEach(function (el) {
      var at = Date.parse(el.getAttribute('datetime'));
      if (!isNaN(at)) el.textContent = ago(t - at);
    });
    document.querySelectorAll('[data-elapsed]').forEach(function (el) {
      var from = Date.parse(el.dataset.elapsed);
      if (!isNaN(from)) el.textContent = (el.dataset.prefix ? el.dataset.prefix + ' ' : '') + span(Math.max(0, t - from));
    });
  }
  setInterval(tick, 1000);

  // A log is read from its end.
  document.querySelectorAll('pre.logs').forEach(function (p) { p.scrollTop = p.scrollHeight; });
  // A notice is for the moment it was given: do not show it again on reload.
  if (window.history && location.search.indexOf('notice=') >= 0) {
    var clean = new URL(location.href);
    clean.searchParams.delete('notice');
    history.replaceState(null, '', clean.pathname + clean.search + clean.hash);
  }

  // ---- Forms that ask first (the Cancel button). ----
  document.addEventListener('submit', function (e) {
    var msg = e.target.dataset && e.target.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // ---- The status line at the foot of the page (a polite live region). ----
  function say(state, text) {
    if (!liveLine) return;
    liveLine.dataset.state = state;
    liveLine.textContent = text;
  }

  // ---- Fetching fragments: at most one request per thing at a time; a
  // change that arrives meanwhile fetches once more afterwards. ----
  var inflight = {};
  function refresh(key, url, apply) {
    var st = inflight[key];
    if (st) { st.again = true; return; }
    st = inflight[key] = { again: false };
    function run() {
      fetch(url, { headers: { 'Accept': 'text/html' }, credentials: 'same-origin', cache: 'no-store' })
        .then(function (r) {
          if (r.redirected || r.status === 401) throw new Error('signed out; reload the page');
          if (!r.ok) throw new Error('HTTP ' + r.status);
          return r.text();
        })
        .then(apply)
        .catch(function (err) { say('error', 'A live update failed: ' + err.message); })
        .then(function () {
          if (st.again) { st.again = false; run(); } else { delete inflight[key]; }
        });
    }
    run();
  }
  function parse(html) {
    var t = document.createElement('template');
    t.innerHTML = html.trim();
    return t.content;
  }

  // ---- The models list. ----
  var table = document.querySelector('table[data-live-list]');
  var countsTimer = null;
  var syncing = null; // models that changed while the list was being reloaded
  function matches(m) {
    var st = table.dataset.filterStatus, q = table.dataset.filterQ;
    if (st && m.status !== st) return false;
    if (q && String(m.name || '').toLowerCase().indexOf(q.toLowerCase()) < 0) return false;
    return true;
  }
  function showTable() {
    table.hidden = !table.tBodies[0].rows.length;
    var empty = document.querySelector('[data-empty]');
    if (empty && !table.hidden) empty.remove();
  }
  function placeRow(row) {
    var tbody = table.tBodies[0];
    var old = tbody.querySelector('tr[data-model-id="' + CSS.escape(row.dataset.modelId) + '"]');
    if (old) {
      if (old.dataset.status !== row.dataset.status) row.classList.add('flash');
      old.replaceWith(row);
      return;
    }
    // Newest first: ids sort by creation time.
    var before = null;
    Array.prototype.some.call(tbody.rows, function (r) {
      if (r.dataset.modelId < row.dataset.modelId) { before = r; return true; }
      return false;
    });
    row.classList.add('flash');
    tbody.insertBefore(row, before);
    showTable();
  }
  function refreshCounts() {
    clearTimeout(countsTimer);
    countsTimer = setTimeout(function () {
      var u = new URL(location.href);
      u.searchParams.delete('cursor');
      u.searchParams.set('fragment', 'counts');
      refresh('counts', u.pathname + u.search, function (html) {
        var nav = parse(html).querySelector('nav[data-counts]');
        var old = document.querySelector('nav[data-counts]');
        if (nav && old) old.replaceWith(nav);
      });
    }, 400);
  }
  function onModelInList(m) {
    if (syncing) { syncing.push(m); return; }
    var known = table.querySelector('tr[data-model-id="' + CSS.escape(m.id) + '"]');
    if (m.archived_at) {
      // Removed: lists leave it out.
      if (known) { known.remove(); say('on', m.name + ' was removed from the list'); }
      refreshCounts();
      return;
    }
    if (known || (table.dataset.firstPage === 'true' && matches(m))) {
      if (known && known.dataset.status !== m.status) say('on', m.name + ' is now ' + m.status);
      refresh('row:' + m.id, '/models/' + encodeURIComponent(m.id) + '?fragment=row', function (html) {
        var row = parse(html).querySelector('tr');
        if (row) { placeRow(row); tick(); }
      });
    }
    refreshCounts();
  }
  // syncList reloads the rows and counts: what changed between making the
  // page and the stream's start. Changes that arrive meanwhile are applied
  // after it, so the older answer cannot overwrite them.
  function syncList() {
    syncing = [];
    var u = new URL(location.href);
    u.searchParams.set('fragment', 'rows');
    fetch(u.pathname + u.search, { headers: { 'Accept': 'text/html' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (!r.ok || r.redirected) throw new Error('HTTP ' + r.status);
        return r.text();
      })
      .then(function (html) {
        table.tBodies[0].replaceChildren(parse(html));
        showTable();
        tick();
      })
      .catch(function (err) { say('error', 'Reloading the list failed: ' + err.message); })
      .then(function () {
        var missed = syncing;
        syncing = null;
        missed.forEach(onModelInList);
        refreshCounts();
      });
  }

  // ---- The model page. ----
  var region = document.getElementById('live');
  function onModelPage(m) {
    if (m.id !== body.dataset.modelId) return;
    var before = region.querySelector('[data-status]');
    if (m.status && before && before.dataset.status !== m.status) say('on', m.name + ' is now ' + m.status);
    refresh('live', '/models/' + encodeURIComponent(m.id) + '?fragment=live', function (html) {
      // Keep the reader's place: focus and the log's scroll.
      var focused = document.activeElement && region.contains(document.activeElement) ? document.activeElement.id : '';
      var logs = region.querySelector('pre.logs');
      var follow = !logs || logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 8;
      var keep = logs ? logs.scrollTop : 0;
      region.replaceChildren(parse(html));
      var nlogs = region.querySelector('pre.logs');
      if (nlogs) nlogs.scrollTop = follow ? nlogs.scrollHeight : keep;
      if (focused) {
        var el = document.getElementById(focused);
        if (el) el.focus(); else document.getElementById('main').focus();
      }
      tick();
    });
  }

  // ---- The notifications list: fetched again (with the page's filter)
  // when a notification changes, at most once a second. ----
  var nlist = document.querySelector('[data-live-notifications]');
  var nlistTimer = null, nlistLast = 0;
  function reloadNotifications() {
    if (nlistTimer) return; // one is due already and will show this change too
    nlistTimer = setTimeout(function () {
      nlistTimer = null;
      nlistLast = Date.now();
      var u = new URL(location.href);
      u.searchParams.set('fragment', 'list');
      refresh('notifications', u.pathname + u.search, function (html) {
        var was = {};
        nlist.querySelectorAll('tr[data-notification-id] [data-status]').forEach(function (el) {
          was[el.closest('tr').dataset.notificationId] = el.dataset.status;
        });
        // Keep the reader's place: a focused Resend button stays focused.
        var focused = document.activeElement && nlist.contains(document.activeElement) ? document.activeElement.id : '';
        nlist.replaceChildren(parse(html));
        nlist.querySelectorAll('tr[data-notification-id]').forEach(function (row) {
          var st = row.querySelector('[data-status]');
          if (st && was[row.dataset.notificationId] !== st.dataset.status) row.classList.add('flash');
        });
        if (focused) {
          var el = document.getElementById(focused);
          if (el) el.focus(); else document.getElementById('main').focus();
        }
        tick();
      });
    }, Math.max(0, nlistLast + 1000 - Date.now()));
  }
  function onNotification(n) {
    var shown = nlist.querySelector('tr[data-notification-id="' + CSS.escape(String(n.id)) + '"] [data-status]');
    if (shown && shown.dataset.status !== n.status) say('on', 'Notification ' + n.id + ' is now ' + n.status);
    reloadNotifications();
  }

  // What changed between making the page and the stream's start.
  function resync() {
    if (table) syncList();
    if (region) onModelPage({ id: body.dataset.modelId });
    if (nlist) reloadNotifications();
  }

  // ---- The event stream. ----
  var url = body.dataset.events;
  if (!url || !window.EventSource) {
    if (url) say('error', 'Live updates need a browser with EventSource; reload to see changes.');
    return;
  }
  var lastId = '';
  var es = null;
  function connect() {
    // The stream is named by the server's instance: after a restart the
    // server answers "reset". Reconnecting by itself, the browser sends
    // Last-Event-ID; a new connection here resumes after lastId, or, with
    // none yet, reloads what the page shows once the stream is open.
    var q = '?instance=' + encodeURIComponent(body.dataset.instance || '');
    if (lastId) q += '&last_event_id=' + encodeURIComponent(lastId);
    var fresh = !lastId;
    es = new EventSource(url + q);
    es.onopen = function () {
      say('on', 'Live updates on');
      if (fresh) { fresh = false; resync(); }
    };
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        say('error', 'Live updates stopped; retrying in 5 s…');
        setTimeout(connect, 5000);
      } else {
        say('off', 'Live updates: reconnecting…');
      }
    };
    es.addEventListener('model', function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      var m;
      try { m = JSON.parse(e.data); } catch (err) { return; }
      if (table) onModelInList(m);
      if (region) onModelPage(m);
    });
    es.addEventListener('notification', function (e) {
      if (e.lastEventId) lastId = e.lastEventId;
      var n;
      try { n = JSON.parse(e.data); } catch (err) { return; }
      if (nlist) onNotification(n);
    });
    es.addEventListener('reset', function () {
      es.close();
      say('error', 'Some live updates were missed; reloading…');
      setTimeout(function () { location.reload(); }, 300);
    });
  }
  connect();
  window.addEventListener('pagehide', function () { if (es) es.close(); });
})();
