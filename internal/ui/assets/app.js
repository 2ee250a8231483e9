// Gantry UI: loads each page as an HTML fragment the server renders,
// follows the event stream to refresh what changed, and streams logs.
// The ACL token (when ACLs are on) lives in sessionStorage and is sent as
// the X-Gantry-Token header on every fetch; the event stream is read with
// fetch too (EventSource cannot send headers), in the server-sent events
// format, resuming from the last index seen.
(function () {
  'use strict';
  var TOKEN_KEY = 'gantry-token';
  var view = document.getElementById('view');
  var main = document.getElementById('main');
  var loginBox = document.getElementById('login');
  var loginWhy = document.getElementById('login-why');
  var loginForm = document.getElementById('login-form');
  var loginInput = document.getElementById('login-token');
  var errorBox = document.getElementById('error');
  var liveState = document.getElementById('live-state');
  var liveToggle = document.getElementById('live-toggle');
  var signOut = document.getElementById('sign-out');

  var token = sessionStorage.getItem(TOKEN_KEY) || '';
  var paused = false;
  var stale = false;
  var lastIndex = 0;
  var stream = null;
  var retryTimer = null;
  var loading = null;
  var refreshTimer = null;
  var logCtl = null;

  function headers(extra) {
    var h = {};
    if (extra) { for (var k in extra) { h[k] = extra[k]; } }
    if (token) { h['X-Gantry-Token'] = token; }
    return h;
  }

  function fragmentURL() {
    var p = location.pathname.replace(/^\/ui\/?/, '');
    if (p === '') { p = 'overview'; }
    return '/ui/fragments/' + p + location.search;
  }

  function message(resp) {
    return resp.text().then(function (t) {
      try { return JSON.parse(t).error || resp.statusText; } catch (e) { return resp.status + ' ' + resp.statusText; }
    });
  }

  function setLive(text) { liveState.textContent = text; }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function showLogin(why) {
    stopEvents();
    stopLogs();
    view.replaceChildren();
    errorBox.hidden = true;
    // Without a token the server's message is meant for the CLI; say it
    // for a browser.
    loginWhy.textContent = token ? (why || '') : 'This cluster has ACLs on: sign in with a token (\'gantry acl token create\' makes one).';
    loginBox.hidden = false;
    signOut.hidden = !token;
    setLive('signed out');
    loginInput.focus();
  }

  // load fetches the current page's fragment. full: a navigation (replace
  // everything, move focus); otherwise a live refresh of its regions.
  function load(full) {
    if (loading) { loading.abort(); }
    var ctl = new AbortController();
    loading = ctl;
    return fetch(fragmentURL(), { headers: headers(), signal: ctl.signal, cache: 'no-store' }).then(function (resp) {
      if (resp.status === 401 || resp.status === 403) {
        return message(resp).then(function (m) { showLogin(m); });
      }
      if (!resp.ok) {
        return message(resp).then(function (m) { showError(m); if (full) { view.replaceChildren(); } });
      }
      return resp.text().then(function (html) {
        if (ctl.signal.aborted) { return; }
        loginBox.hidden = true;
        errorBox.hidden = true;
        signOut.hidden = !token;
        swap(html, full);
        startEvents();
      });
    }).catch(function (e) {
      if (!ctl.signal.aborted) { showError('The Gantry server does not answer: ' + e.message); }
    }).finally(function () {
      if (loading === ctl) { loading = null; }
    });
  }

  function focusKey() {
    var a = document.activeElement;
    if (!a || !view.contains(a)) { return null; }
    if (a.id) { return { id: a.id }; }
    var href = a.getAttribute('href');
    if (href) { return { href: href }; }
    return null;
  }

  function restoreFocus(k) {
    if (!k) { return; }
    var el = k.id ? document.getElementById(k.id) : view.querySelector('[href="' + CSS.escape(k.href) + '"]');
    if (el) { el.focus({ preventScroll: true }); }
  }

  function regionIDs(root) {
    return Array.prototype.map.call(root.querySelectorAll('[data-region]'), function (r) { return r.id; }).join(' ');
  }

  function swap(html, full) {
    var tpl = document.createElement('template');
    tpl.innerHTML = html;
    var next = tpl.content.querySelector('.page');
    var cur = view.querySelector('.page');
    if (!next) { showError('The server sent a page this UI cannot read.'); return; }
    var same = cur && cur.dataset.page === next.dataset.page && cur.dataset.key === next.dataset.key;
    if (!full && same && regionIDs(cur) === regionIDs(next)) {
      var k = focusKey();
      next.querySelectorAll('[data-region]').forEach(function (r) {
        var old = cur.querySelector('#' + CSS.escape(r.id));
        if (old) { old.replaceWith(r); }
      });
      ['data-index', 'data-title', 'data-topics', 'data-keys'].forEach(function (a) { cur.setAttribute(a, next.getAttribute(a) || ''); });
      restoreFocus(k);
    } else {
      var keepLogs = null;
      if (same) {
        var oldLogs = cur.querySelector('[data-logs]');
        var newLogs = next.querySelector('[data-logs]');
        if (oldLogs && newLogs && oldLogs.dataset.alloc === newLogs.dataset.alloc) { keepLogs = oldLogs; newLogs.replaceWith(oldLogs); }
      }
      if (!keepLogs) { stopLogs(); }
      var k2 = full ? null : focusKey();
      view.replaceChildren(tpl.content);
      if (!keepLogs) { startLogs(); }
      if (full) { main.focus({ preventScroll: true }); window.scrollTo(0, 0); } else { restoreFocus(k2); }
    }
    var page = view.querySelector('.page');
    document.title = (page.dataset.title ? page.dataset.title + ' · ' : '') + 'Gantry';
    document.querySelectorAll('[data-nav]').forEach(function (a) {
      var on = page.dataset.page === a.dataset.nav || page.dataset.page.indexOf(a.dataset.nav.replace(/s$/, '')) === 0;
      if (on) { a.setAttribute('aria-current', 'page'); } else { a.removeAttribute('aria-current'); }
    });
    if (!lastIndex) { lastIndex = Number(page.dataset.index) || 0; }
  }

  // Live updates.

  function relevant(ev) {
    var page = view.querySelector('.page');
    if (!page) { return false; }
    var topics = (page.dataset.topics || '').split(' ').filter(Boolean);
    var keys = (page.dataset.keys || '').split(' ').filter(Boolean);
    if (topics.length && topics.indexOf(ev.topic) < 0) { return false; }
    if (!keys.length) { return true; }
    var p = ev.payload || {};
    return [ev.key, p.job, p.node_id, p.id].some(function (k) { return k && keys.indexOf(k) >= 0; });
  }

  function scheduleRefresh() {
    if (paused) { stale = true; return; }
    if (refreshTimer) { return; }
    refreshTimer = setTimeout(function () { refreshTimer = null; load(false); }, 250);
  }

  function onFrame(frame) {
    var data = '';
    frame.split('\n').forEach(function (line) {
      if (line.indexOf('data:') === 0) { data += line.slice(5).trim(); }
    });
    if (!data) { return; }
    var ev;
    try { ev = JSON.parse(data); } catch (e) { return; }
    if (ev.index > lastIndex) { lastIndex = ev.index; }
    setLive('live · index ' + lastIndex);
    if (relevant(ev)) { scheduleRefresh(); }
  }

  function startEvents() {
    if (stream || paused || retryTimer) { return; }
    var ctl = new AbortController();
    stream = ctl;
    var h = headers({ 'Accept': 'text/event-stream' });
    if (lastIndex) { h['Last-Event-ID'] = String(lastIndex); }
    fetch('/v1/events?index=' + lastIndex, { headers: h, signal: ctl.signal, cache: 'no-store' }).then(function (resp) {
      if (resp.status === 410) {
        // The store no longer holds that far back: start from now, and
        // reload the page so nothing shown is older than the stream.
        lastIndex = 0;
        throw new Error('resuming from now');
      }
      if (resp.status === 401 || resp.status === 403) {
        stream = null;
        return message(resp).then(function (m) { showLogin(m); });
      }
      if (!resp.ok) { return message(resp).then(function (m) { throw new Error(m); }); }
      setLive('live · index ' + lastIndex);
      var reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      var buf = '';
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) { throw new Error('the event stream ended'); }
          buf += r.value;
          var i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            var frame = buf.slice(0, i);
            buf = buf.slice(i + 2);
            onFrame(frame);
          }
          return pump();
        });
      }
      return pump();
    }).catch(function () {
      if (ctl.signal.aborted || stream !== ctl) { return; }
      stream = null;
      setLive('reconnecting…');
      retryTimer = setTimeout(function () {
        retryTimer = null;
        if (!lastIndex) { load(false); } else { startEvents(); scheduleRefresh(); }
      }, 2000);
    });
  }

  function stopEvents() {
    if (stream) { stream.abort(); stream = null; }
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
  }

  liveToggle.addEventListener('click', function () {
    paused = !paused;
    liveToggle.setAttribute('aria-pressed', String(paused));
    liveToggle.textContent = paused ? 'Resume live updates' : 'Pause live updates';
    if (paused) {
      stopEvents();
      setLive('paused');
    } else {
      setLive('connecting…');
      startEvents();
      if (stale) { stale = false; load(false); }
    }
  });

  // Logs of an allocation's task, followed as they are written.

  function stopLogs() {
    if (logCtl) { logCtl.abort(); logCtl = null; }
  }

  function startLogs() {
    var sec = view.querySelector('[data-logs]');
    if (!sec) { return; }
    var form = sec.querySelector('[data-log-form]');
    var out = sec.querySelector('[data-log-output]');
    if (!form || !out) { return; }
    var state = sec.querySelector('#log-state');
    var toggle = sec.querySelector('#log-toggle');
    var following = true;
    function follow() {
      stopLogs();
      var ctl = new AbortController();
      logCtl = ctl;
      out.textContent = '';
      var q = new URLSearchParams({ task: form.task.value, type: form.type.value, follow: 'true', tail: '500' });
      state.textContent = 'loading…';
      fetch('/v1/allocations/' + encodeURIComponent(sec.dataset.alloc) + '/logs?' + q.toString(), { headers: headers(), signal: ctl.signal, cache: 'no-store' }).then(function (resp) {
        if (!resp.ok) { return message(resp).then(function (m) { throw new Error(m); }); }
        state.textContent = 'following';
        var reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) { throw new Error('the log stream ended (the task stopped?)'); }
            var atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
            out.append(document.createTextNode(r.value));
            if (out.textContent.length > 400000) { out.textContent = out.textContent.slice(-300000); }
            if (atEnd) { out.scrollTop = out.scrollHeight; }
            return pump();
          });
        }
        return pump();
      }).catch(function (e) {
        if (ctl.signal.aborted) { return; }
        state.textContent = e.message;
        if (following && view.contains(sec)) {
          setTimeout(function () { if (following && logCtl === ctl && view.contains(sec)) { follow(); } }, 3000);
        }
      });
    }
    form.addEventListener('change', function () { if (following) { follow(); } });
    form.addEventListener('submit', function (e) { e.preventDefault(); });
    toggle.addEventListener('click', function () {
      following = !following;
      toggle.setAttribute('aria-pressed', String(!following));
      toggle.textContent = following ? 'Pause' : 'Follow';
      if (following) { follow(); } else { stopLogs(); state.textContent = 'paused'; }
    });
    follow();
  }

  // Navigation without reloading the page.

  document.addEventListener('click', function (e) {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) { return; }
    var a = e.target.closest ? e.target.closest('a') : null;
    if (!a) { return; }
    var href = a.getAttribute('href') || '';
    if (href.indexOf('/ui/') !== 0 || href.indexOf('/ui/assets/') === 0 || a.target) { return; }
    e.preventDefault();
    if (href !== location.pathname + location.search) { history.pushState({}, '', href); }
    load(true);
  });
  window.addEventListener('popstate', function () { load(true); });

  loginForm.addEventListener('submit', function (e) {
    e.preventDefault();
    token = loginInput.value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    loginInput.value = '';
    lastIndex = 0;
    load(true);
  });
  signOut.addEventListener('click', function () {
    sessionStorage.removeItem(TOKEN_KEY);
    token = '';
    stopEvents();
    stopLogs();
    lastIndex = 0;
    load(true);
  });

  load(true);
})();
