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
        // Keep a followed log pane (not one the server put in the shell).
        if (oldLogs && newLogs && oldLogs.dataset.started && oldLogs.dataset.alloc === newLogs.dataset.alloc) { keepLogs = oldLogs; newLogs.replaceWith(oldLogs); }
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
    var rendered = Date.parse(page.dataset.now || '');
    if (rendered) { clockOffset = rendered - Date.now(); }
    tick();
    showArmed();
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

  // The stream select offers both streams (the default: stdout and
  // stderr interleaved as they arrive, stderr marked), or one of them.
  function startLogs() {
    var sec = view.querySelector('[data-logs]');
    if (!sec) { return; }
    var form = sec.querySelector('[data-log-form]');
    var out = sec.querySelector('[data-log-output]');
    if (!form || !out) { return; }
    var state = sec.querySelector('#log-state');
    var toggle = sec.querySelector('#log-toggle');
    var following = true;
    sec.dataset.started = 'true';
    function append(text, stream) {
      var atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      if (stream === 'stderr') {
        var span = document.createElement('span');
        span.className = 'stderr';
        span.textContent = text;
        out.append(span);
      } else {
        out.append(document.createTextNode(text));
      }
      if (out.textContent.length > 400000) { out.textContent = out.textContent.slice(-300000); }
      if (atEnd) { out.scrollTop = out.scrollHeight; }
    }
    function follow() {
      stopLogs();
      var ctl = new AbortController();
      logCtl = ctl;
      out.textContent = '';
      var type = form.type.value;
      var streams = type === 'both' ? ['stdout', 'stderr'] : [type];
      var open = 0, ended = 0, got = false, failed = null;
      function say() {
        if (ctl.signal.aborted) { return; }
        if (failed) { state.textContent = failed; return; }
        if (ended === streams.length) {
          state.textContent = got ? 'the log stream ended (the task stopped?)' : 'the task wrote nothing, and its log stream ended (the task stopped?)';
        } else if (open < streams.length) {
          state.textContent = 'connecting…';
        } else {
          state.textContent = got ? 'following' : 'following · no output yet';
        }
      }
      say();
      // The agent may take a moment; never leave the state unexplained.
      setTimeout(function () { if (logCtl === ctl && open < streams.length && !failed) { state.textContent = 'waiting for the agent of this allocation…'; } }, 5000);
      var done = streams.map(function (stream) {
        var q = new URLSearchParams({ task: form.task.value, type: stream, follow: 'true', tail: '500' });
        return fetch('/v1/allocations/' + encodeURIComponent(sec.dataset.alloc) + '/logs?' + q.toString(), { headers: headers(), signal: ctl.signal, cache: 'no-store' }).then(function (resp) {
          if (!resp.ok) { return message(resp).then(function (m) { throw new Error(m); }); }
          open++;
          say();
          var reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
          function pump() {
            return reader.read().then(function (r) {
              if (r.done) { ended++; say(); return; }
              if (r.value) { got = true; append(r.value, stream); say(); }
              return pump();
            });
          }
          return pump();
        });
      });
      Promise.all(done).then(function () {
        if (!ctl.signal.aborted) { throw new Error(''); }
      }).catch(function (e) {
        if (ctl.signal.aborted) { return; }
        if (e.message) { failed = e.message; say(); }
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

  // Relative times tick: each <time data-ago> says how long ago it was,
  // by the server's clock (the page carries the time it was rendered at).

  var clockOffset = 0;
  function ago(ms) {
    var s = Math.floor(ms / 1000);
    if (s < 0) { return 'just now'; }
    if (s < 60) { return s + 's ago'; }
    if (s < 3600) { return Math.floor(s / 60) + 'm ago'; }
    if (s < 48 * 3600) { return Math.floor(s / 3600) + 'h ago'; }
    return Math.floor(s / 86400) + 'd ago';
  }
  function tick() {
    var now = Date.now() + clockOffset;
    view.querySelectorAll('time[data-ago]').forEach(function (t) {
      var at = Date.parse(t.getAttribute('datetime'));
      if (!at || at < 86400000) { return; }
      var text = ago(now - at);
      if (t.textContent !== text) { t.textContent = text; }
    });
  }
  setInterval(tick, 1000);

  // Filters are GET forms (they work without JavaScript too); here they
  // load the page in place. Selects apply at once.

  function formURL(form) {
    var q = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (v !== '') { q.append(k, v); } });
    var s = q.toString();
    return form.getAttribute('action') + (s ? '?' + s : '');
  }
  view.addEventListener('submit', function (e) {
    var form = e.target;
    if (form.matches('[data-filter-form]')) {
      e.preventDefault();
      var href = formURL(form);
      if (href !== location.pathname + location.search) { history.pushState({}, '', href); }
      load(true).then(function () {
        var again = view.querySelector('[data-filter-form]');
        if (again) { again.querySelector('button[type=submit]').focus({ preventScroll: true }); }
      });
      return;
    }
    if (form.matches('[data-action]')) {
      e.preventDefault();
      act(form);
    }
  });
  view.addEventListener('change', function (e) {
    var form = e.target.form;
    if (form && form.matches('[data-filter-form]') && e.target.tagName === 'SELECT') {
      if (form.requestSubmit) { form.requestSubmit(); }
    }
  });

  // Buttons that change something (promote, revert, scan) post to the API
  // with the token. Promote and revert ask for a second click.

  // The armed button outlives a live refresh of its region: it is kept
  // by its form's action, not by the element.
  var armed = null;
  function actionKey(form) { return form.getAttribute('action') + ' ' + (form.dataset.version || ''); }
  function showArmed() {
    view.querySelectorAll('form[data-action]').forEach(function (f) {
      var b = f.querySelector('button');
      if (!b) { return; }
      if (!b.dataset.label) { b.dataset.label = b.textContent; }
      var on = armed && armed.key === actionKey(f) && Date.now() < armed.until;
      b.textContent = on ? 'Confirm: ' + b.dataset.label.toLowerCase() : b.dataset.label;
    });
  }

  function act(form) {
    var kind = form.dataset.action;
    var btn = form.querySelector('button');
    var st = form.querySelector('.action-state') || (form.parentNode && form.parentNode.querySelector('.action-state'));
    var key = actionKey(form);
    if (kind === 'promote' || kind === 'revert') {
      if (!armed || armed.key !== key || Date.now() >= armed.until) {
        armed = { key: key, until: Date.now() + 8000 };
        showArmed();
        setTimeout(showArmed, 8100);
        return;
      }
      armed = null;
      showArmed();
    }
    var body = kind === 'revert' ? JSON.stringify({ version: Number(form.dataset.version) }) : '{}';
    btn.disabled = true;
    if (st) { st.textContent = kind === 'scan' ? 'auditing every node…' : 'sending…'; }
    fetch(form.getAttribute('action'), { method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body: body, cache: 'no-store' }).then(function (resp) {
      if (!resp.ok) { return message(resp).then(function (m) { throw new Error(m); }); }
      return resp.json();
    }).then(function (r) {
      var text = 'done';
      if (kind === 'scan') {
        text = 'audited ' + (r.scanned || []).length + ' nodes' + ((r.skipped || []).length ? '; not audited: ' + r.skipped.map(function (x) { return x.node + ' (' + x.reason + ')'; }).join(', ') : '');
      } else if (kind === 'revert') {
        text = 'registered as version ' + r.job_version;
      } else if (kind === 'promote') {
        text = 'promoted';
      }
      return load(false).then(function () {
        var again = view.querySelector('form[data-action="' + kind + '"]' + (form.dataset.version ? '[data-version="' + form.dataset.version + '"]' : ''));
        var st2 = again ? (again.querySelector('.action-state') || again.parentNode.querySelector('.action-state')) : null;
        if (st2) { st2.textContent = text; } else if (st) { st.textContent = text; }
      });
    }).catch(function (e) {
      if (st) { st.textContent = e.message; }
    }).finally(function () { btn.disabled = false; });
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
