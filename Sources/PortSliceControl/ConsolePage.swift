/// The operator console: one page (`GET /console`) with its style sheet and script, showing
/// the address space slice by slice, capacity per trait class, hosts, edges and the
/// assignment log, updated live from the slice table's long poll.
///
/// The assets are Swift string constants rather than files beside the binary so that the
/// allocator stays one self-contained executable: nothing to install next to it, nothing
/// fetched from a CDN or any other host, so the console works on an isolated network and is
/// always the version of the API it talks to. The page is plain HTML, CSS and ES2020 with no
/// framework, and it obeys the content security policy the route sends (`default-src 'self'`):
/// no inline script or style attribute; colours that depend on data (a host's colour, a bar's
/// width) are set through the CSS object model.
///
/// The page reads a viewer or admin token from the URL fragment (`/console#token=...`, never
/// sent to the server), keeps it in `sessionStorage`, and sends it as a bearer token with each
/// request. Tests rely on its markup: each address row has `data-address`, each slice has the
/// class `slice` with `data-state`, `data-index` and, when leased, `data-host`; and
/// `window.portsliceConsole` reports `firstRenderMs`, `renders` and the table `version` shown.
public enum ConsolePage {
    public static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
      <meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <meta name="referrer" content="no-referrer">
      <link rel="icon" href="data:,">
      <title>portslice console</title>
      <link rel="stylesheet" href="/console/console.css">
      <script src="/console/console.js" defer></script>
    </head>
    <body>
      <header class="topbar">
        <div class="brand"><span class="logo" aria-hidden="true"></span>portslice <span class="brand-sub">console</span></div>
        <div class="topbar-status">
          <span id="table-version" class="pill" title="slice table version" hidden>table v–</span>
          <span id="live" class="live" data-live="idle"><span class="dot" aria-hidden="true"></span><span id="live-text">offline</span></span>
          <button id="sign-out" type="button" class="ghost" hidden>Sign out</button>
        </div>
      </header>

      <div id="banner" class="banner" role="alert" hidden></div>

      <main>
        <section id="login" class="card login" hidden>
          <h1>Sign in</h1>
          <p id="login-message" class="muted">Paste a viewer or admin token.</p>
          <form id="login-form" autocomplete="off">
            <label for="token-input">Token</label>
            <div class="login-row">
              <input id="token-input" name="token" type="password" required spellcheck="false">
              <button type="submit">Sign in</button>
            </div>
          </form>
          <p class="muted small">The token stays in this tab (session storage) and is sent only to this allocator.</p>
        </section>

        <div id="dashboard" hidden>
          <section class="card" aria-labelledby="space-title">
            <div class="card-head">
              <h2 id="space-title">Address space</h2>
              <div class="legend" aria-label="legend">
                <span class="legend-item"><span class="swatch" data-state="free"></span>free</span>
                <span class="legend-item"><span class="swatch" data-state="leased"></span>leased (host colour)</span>
                <span class="legend-item"><span class="swatch" data-state="quarantined"></span>quarantined</span>
                <span class="legend-item"><span class="swatch" data-state="draining"></span>draining</span>
              </div>
            </div>
            <form id="filters" class="filters" role="search">
              <label>Trait class <select id="filter-class"><option value="">all classes</option></select></label>
              <label>Host <select id="filter-host"><option value="">all hosts</option></select></label>
              <label>Address <input id="filter-address" type="search" placeholder="e.g. 203.0.113." spellcheck="false"></label>
              <span id="space-count" class="muted"></span>
            </form>
            <div id="host-legend" class="host-legend"></div>
            <div class="space-columns" aria-hidden="true">
              <span>address</span><span>trait class</span><span>slices, by index</span>
                <span class="counts"><span class="count">free</span><span class="count">leased</span><span class="count">quar.</span><span class="count">drain.</span></span>
            </div>
            <div id="space" class="space">
              <div id="space-sizer" class="space-sizer"><div id="space-rows" class="space-rows"></div></div>
              <p id="space-empty" class="empty" hidden>No address matches.</p>
            </div>
          </section>

          <div class="grid">
            <section class="card" aria-labelledby="classes-title">
              <div class="card-head"><h2 id="classes-title">Trait classes</h2></div>
              <div id="classes" class="classes"></div>
            </section>

            <section class="card" aria-labelledby="who-title">
              <div class="card-head"><h2 id="who-title">Who held a port</h2></div>
              <form id="who-form" class="who-form">
                <label>Address <input id="who-address" name="address" required placeholder="127.0.0.2" spellcheck="false"></label>
                <label>Port <input id="who-port" name="port" type="number" min="0" max="65535" required placeholder="3100"></label>
                <label>Time <input id="who-time" name="at" type="datetime-local" step="1" required></label>
                <button type="submit">Look up</button>
              </form>
              <div id="who-result" class="who-result" aria-live="polite">
                <p class="message">Which host held an address and port at a moment, from the assignment log.</p>
              </div>
            </section>
          </div>

          <div class="grid">
            <section class="card" aria-labelledby="hosts-title">
              <div class="card-head"><h2 id="hosts-title">Hosts</h2><span id="hosts-count" class="muted"></span></div>
              <div class="table-wrap">
                <table id="hosts">
                  <thead><tr><th>Name</th><th>Labels</th><th class="num">Leases</th><th>Last renewal</th><th>Renewal</th><th>Traits wanted</th></tr></thead>
                  <tbody></tbody>
                </table>
              </div>
            </section>

            <section class="card" aria-labelledby="edges-title">
              <div class="card-head"><h2 id="edges-title">Edges</h2><span id="edges-version" class="muted"></span></div>
              <div class="table-wrap">
                <table id="edges">
                  <thead><tr><th>Name</th><th class="num">Applied version</th><th class="num">Behind</th><th>Last report</th></tr></thead>
                  <tbody></tbody>
                </table>
              </div>
            </section>
          </div>
        </div>
      </main>

      <div id="tooltip" class="tooltip" role="tooltip" hidden></div>
    </body>
    </html>
    """#
}
