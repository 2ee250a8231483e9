package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// requireUIDep skips a test whose tool (chromium, prometheus) is missing,
// or fails it when GANTRY_REQUIRE_UI_DEPS=1 (as CI sets it).
func requireUIDep(t *testing.T, what string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed (looked for %s); on Debian: apt-get install %s", what, strings.Join(names, ", "), what)
	if os.Getenv("GANTRY_REQUIRE_UI_DEPS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; set GANTRY_REQUIRE_UI_DEPS=1 to make this a failure")
	return ""
}

// Browser is a headless Chromium driven over the DevTools protocol.
type Browser struct {
	t       *testing.T
	ctx     context.Context
	shots   string // where screenshots go
	TimeOut time.Duration

	mu       sync.Mutex
	problems []string // console errors and uncaught exceptions, in order
}

// StartBrowser starts headless Chromium for the test.
func StartBrowser(t *testing.T) *Browser {
	t.Helper()
	path := os.Getenv("GANTRY_CHROMIUM")
	if path == "" {
		path = requireUIDep(t, "chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root in CI
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium %s: %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &Browser{t: t, ctx: ctx, shots: screenshotDir(t), TimeOut: 60 * time.Second}
	// Every console error and uncaught exception of the pages is kept
	// for NoConsoleErrors.
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// NoConsoleErrors fails the test for each console error or uncaught
// exception the pages reported since the last call.
func (b *Browser) NoConsoleErrors(where string) {
	b.t.Helper()
	b.mu.Lock()
	ps := b.problems
	b.problems = nil
	b.mu.Unlock()
	for _, p := range ps {
		if strings.Contains(p, "net::ERR_NETWORK_CHANGED") {
			// Chromium aborts the requests in flight when the host's
			// network interfaces change, which other tests do by
			// creating Docker networks and network namespaces. It is
			// the host's doing, not the page's; what the page then shows
			// is still checked by the waits around this call.
			b.t.Logf("%s: ignored, the host's interfaces changed: %s", where, p)
			continue
		}
		b.t.Errorf("%s: console error: %s", where, p)
	}
}

// screenshotDir is where the UI tests save screenshots: GANTRY_UI_SCREENSHOTS,
// else gantry-ui-screenshots in the temporary directory. The tests log it.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("GANTRY_UI_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "gantry-ui-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Run runs actions with the browser's time-out.
func (b *Browser) Run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.TimeOut)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

func (b *Browser) fail(what string, err error) {
	b.t.Helper()
	text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
	b.t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
}

// eval evaluates a JavaScript expression to a T.
func eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.TimeOut)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluate "+expr, err)
	}
	return v
}

// Eval evaluates a JavaScript expression for its effect.
func (b *Browser) Eval(expr string) { b.t.Helper(); eval[any](b, expr) }

// WaitJS waits until a JavaScript expression is true.
func (b *Browser) WaitJS(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.TimeOut+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[any](expr, chromedp.WithPollingTimeout(b.TimeOut), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		b.fail("wait for "+what, err)
	}
}

// WaitText waits until the element sel (CSS) contains text.
func (b *Browser) WaitText(sel, text string) {
	b.t.Helper()
	b.WaitJS(fmt.Sprintf("%q in %s", text, sel), fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.innerText.includes(%s); })()`, js(sel), js(text)))
}

// Text is the visible text of the element sel.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.innerText : ''; })()`, js(sel)))
}

// Page navigates to url and waits for the page's fragment.
func (b *Browser) Page(url, page string) {
	b.t.Helper()
	b.Run("open "+url, chromedp.Navigate(url))
	b.WaitPage(page)
}

// WaitPage waits until the view shows the page named page.
func (b *Browser) WaitPage(page string) {
	b.t.Helper()
	b.WaitJS("page "+page, fmt.Sprintf(`!!document.querySelector('#view .page[data-page=%s]')`, js(page)))
}

// Click clicks the first element matching sel.
//
// A live page may replace the element between the query and the click
// (a refresh swapped the table it is in): Chrome then answers "Could not
// find node with given id", and the click is tried again on the new one.
func (b *Browser) Click(sel string) {
	b.t.Helper()
	var err error
	for range 3 {
		ctx, cancel := context.WithTimeout(b.ctx, b.TimeOut)
		err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "Could not find node with given id") {
			break
		}
	}
	if err != nil {
		b.fail("click "+sel, err)
	}
}

// Screenshot saves the whole page as name.png in the screenshot folder.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	// Once the event stream is followed (or the page is signed out), the
	// header says so: the picture shows the page as a user sees it.
	b.WaitJS("the live indicator", `(() => { const s = document.getElementById('live-state').textContent; return s.startsWith('live') || s === 'signed out' || s === 'paused'; })()`)
	ctx, cancel := context.WithTimeout(b.ctx, b.TimeOut)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
	return p
}

// TabThrough tabs through the page from its start and checks that every
// control (link, button, form field, focusable region) that is shown
// receives the focus. It returns how many there are.
func (b *Browser) TabThrough(page string) int {
	b.t.Helper()
	// Nothing may change while tabbing: pause live updates, and resume
	// them afterwards.
	b.Pause()
	defer b.Resume()
	// A refresh already in flight when the pause began can still replace
	// the page's controls (their tab marks go with them): then tab again
	// over the page as it now stands, once.
	for attempt := 1; ; attempt++ {
		n, missed, replaced := b.tabOnce(page)
		if len(missed) == 0 {
			return n
		}
		if !replaced || attempt == 2 {
			b.t.Errorf("page %s: Tab reached %d of %d controls; never reached:\n  %s", page, n-len(missed), n, strings.Join(missed, "\n  "))
			return n
		}
		b.t.Logf("page %s: the page re-rendered while tabbing; tabbing again", page)
	}
}

// tabOnce marks the page's shown controls and presses Tab until each got
// the focus. It returns how many there are, the ones never reached, and
// whether some marked control left the page meanwhile (a re-render).
func (b *Browser) tabOnce(page string) (int, []string, bool) {
	b.t.Helper()
	n := eval[int](b, `(() => {
		const sel = 'a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';
		const shown = e => {
			if (e.closest('[hidden]')) return false;
			const st = getComputedStyle(e), r = e.getBoundingClientRect();
			return st.visibility !== 'hidden' && st.display !== 'none' && (r.width > 0 || r.height > 0);
		};
		const els = [...document.querySelectorAll(sel)].filter(shown);
		document.querySelectorAll('[data-tab-id]').forEach(e => e.removeAttribute('data-tab-id'));
		els.forEach((e, i) => e.setAttribute('data-tab-id', String(i)));
		if (document.activeElement) document.activeElement.blur();
		window.getSelection().removeAllRanges();
		return els.length;
	})()`)
	reached := map[string]bool{}
	var order []string
	for i := 0; i < n+3 && len(reached) < n; i++ {
		b.Run("press Tab", chromedp.KeyEvent(kb.Tab))
		id := eval[string](b, `(document.activeElement && document.activeElement.getAttribute('data-tab-id')) || ''`)
		if id != "" {
			reached[id] = true
			order = append(order, id)
		}
	}
	b.t.Logf("page %s: Tab reached %d of %d controls", page, len(reached), n)
	if len(reached) >= n {
		return n, nil, false
	}
	marked := eval[[]string](b, `[...document.querySelectorAll('[data-tab-id]')].map(e => e.getAttribute('data-tab-id') + ': <' + e.tagName.toLowerCase() + '> ' + (e.getAttribute('href') || e.id || e.textContent.trim().slice(0, 40)))`)
	var out []string
	for _, m := range marked {
		id, _, _ := strings.Cut(m, ":")
		if !reached[id] {
			out = append(out, m)
		}
	}
	replaced := len(marked) < n
	for len(out) < n-len(reached) {
		out = append(out, "(a control replaced by a re-render)")
	}
	sort.Strings(out)
	return n, out, replaced
}

// js quotes a Go string as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Pause stops the page's live updates (the header's toggle), so that
// nothing changes under a check.
func (b *Browser) Pause() {
	b.t.Helper()
	b.Eval(`(() => { const t = document.getElementById('live-toggle'); if (t.getAttribute('aria-pressed') !== 'true') t.click(); return true; })()`)
}

// Resume restarts the page's live updates.
func (b *Browser) Resume() {
	b.t.Helper()
	b.Eval(`(() => { const t = document.getElementById('live-toggle'); if (t.getAttribute('aria-pressed') === 'true') t.click(); return true; })()`)
}

func chromeNavigate(url string) chromedp.Action[chromedp.Void] { return chromedp.Navigate(url) }

func chromeType(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible)
}

// chromeSubmit presses the form's submit button, as a user does (a
// script-level submit() would skip the form's submit handler).
func chromeSubmit(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel+" [type=submit]"), chromedp.NodeVisible)
}

// copyFile copies a screenshot into the repository.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// chromeSelect picks an option of a select as a user does: the value
// changes and the change event fires.
func chromeSelect(sel, value string) chromedp.Action[chromedp.Void] {
	pick := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const s = document.querySelector(%s); if (!s) return false; s.value = %s; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === %s; })()`, js(sel), js(value), js(value)))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		ok, err := pick(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("select %s has no option %q", sel, value)
		}
		return chromedp.Void{}, err
	}
}
