// The console's style sheet: a dark operator palette, the slice strips and their states, the
// tables and the tooltip. Colours that depend on data are set by the script (see ConsolePage).
extension ConsolePage {
    public static let css = #"""
    :root {
      color-scheme: dark;
      --bg: #0e1218;
      --panel: #151b23;
      --panel-raised: #1b222c;
      --border: #263041;
      --text: #dce3ec;
      --muted: #8a97a8;
      --accent: #5aa9ff;
      --ok: #46c28a;
      --warn: #e8a93c;
      --bad: #f0686a;
      --free: #263244;
      --free-edge: #314059;
      --quarantined: #e8a93c;
      --draining: #b47be6;
      --row-height: 30px;
      --radius: 10px;
      --mono: ui-monospace, "SF Mono", "JetBrains Mono", Menlo, Consolas, monospace;
      font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Ubuntu, sans-serif;
    }

    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    body { margin: 0; background: var(--bg); color: var(--text); }
    h1, h2 { margin: 0; font-weight: 600; }
    h1 { font-size: 20px; }
    h2 { font-size: 15px; letter-spacing: .02em; }
    .muted { color: var(--muted); }
    .small { font-size: 12px; }
    .mono { font-family: var(--mono); }

    button {
      font: inherit; color: #08111d; background: var(--accent); border: 0; border-radius: 7px;
      padding: 6px 14px; cursor: pointer; font-weight: 600;
    }
    button:hover { filter: brightness(1.1); }
    button.ghost { background: transparent; color: var(--text); border: 1px solid var(--border); font-weight: 500; }
    input, select {
      font: inherit; color: var(--text); background: var(--bg); border: 1px solid var(--border);
      border-radius: 7px; padding: 5px 9px; min-width: 0;
    }
    input:focus, select:focus, button:focus-visible, .strip:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
    label { display: inline-flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--muted); }

    /* Header */
    .topbar {
      position: sticky; top: 0; z-index: 5; display: flex; align-items: center; justify-content: space-between;
      padding: 10px 24px; background: rgba(14, 18, 24, .92); backdrop-filter: blur(6px); border-bottom: 1px solid var(--border);
    }
    .brand { display: flex; align-items: center; gap: 8px; font-weight: 700; font-size: 16px; }
    .brand-sub { color: var(--muted); font-weight: 500; }
    .logo {
      width: 18px; height: 18px; border-radius: 4px;
      background: linear-gradient(90deg, var(--accent) 0 30%, var(--free) 30% 40%, var(--ok) 40% 70%, var(--free) 70% 80%, var(--draining) 80%);
    }
    .topbar-status { display: flex; align-items: center; gap: 12px; }
    .pill { font-family: var(--mono); font-size: 12px; padding: 3px 9px; border-radius: 999px; background: var(--panel-raised); border: 1px solid var(--border); }
    .live { display: inline-flex; align-items: center; gap: 6px; font-size: 12px; color: var(--muted); }
    .live .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--muted); }
    .live[data-live="live"] { color: var(--ok); }
    .live[data-live="live"] .dot { background: var(--ok); box-shadow: 0 0 0 3px rgba(70, 194, 138, .18); }
    .live[data-live="reconnecting"] { color: var(--warn); }
    .live[data-live="reconnecting"] .dot { background: var(--warn); animation: pulse 1s ease-in-out infinite alternate; }
    @keyframes pulse { from { opacity: 1; } to { opacity: .25; } }

    .banner { margin: 12px 24px 0; padding: 10px 14px; border-radius: var(--radius); background: rgba(240, 104, 106, .12); border: 1px solid rgba(240, 104, 106, .45); color: #ffc9c9; }

    main { padding: 16px 24px 40px; max-width: 1600px; margin: 0 auto; display: flex; flex-direction: column; gap: 16px; }
    .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
    #dashboard { display: flex; flex-direction: column; gap: 16px; }
    .card { background: var(--panel); border: 1px solid var(--border); border-radius: var(--radius); padding: 14px 16px; min-width: 0; }
    .card-head { display: flex; align-items: center; justify-content: space-between; gap: 12px; flex-wrap: wrap; margin-bottom: 10px; }

    /* Login */
    .login { max-width: 460px; margin: 8vh auto 0; padding: 24px; display: flex; flex-direction: column; gap: 12px; }
    .login-row { display: flex; gap: 8px; }
    .login-row input { flex: 1; font-family: var(--mono); }
    #login-message[data-kind="error"] { color: var(--bad); }

    /* Legend */
    .legend, .host-legend { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 12px; color: var(--muted); }
    .legend-item { display: inline-flex; align-items: center; gap: 6px; }
    .host-legend { margin: 0 0 10px; }
    .host-legend:empty { display: none; }
    .host-chip { display: inline-flex; align-items: center; gap: 5px; padding: 1px 8px 1px 4px; border-radius: 999px; background: var(--panel-raised); }
    .host-chip .swatch { width: 10px; height: 10px; border-radius: 50%; }
    .swatch { display: inline-block; width: 14px; height: 10px; border-radius: 2px; }

    /* States: one colour or pattern each; leased slices take their host's colour (--host). */
    .swatch[data-state="free"], .slice[data-state="free"] { background: var(--free); box-shadow: inset 0 0 0 1px var(--free-edge); }
    .swatch[data-state="leased"] { background: linear-gradient(90deg, hsl(200 65% 58%), hsl(140 60% 52%), hsl(320 62% 62%)); }
    .slice[data-state="leased"], .host-chip .swatch { background: var(--host, var(--accent)); }
    .swatch[data-state="quarantined"], .slice[data-state="quarantined"] {
      background: repeating-linear-gradient(135deg, var(--quarantined) 0 3px, #6b4c17 3px 6px);
    }
    .swatch[data-state="draining"], .slice[data-state="draining"] {
      background: repeating-linear-gradient(45deg, var(--draining) 0 3px, #4a3266 3px 6px);
    }

    /* Filters */
    .filters { display: flex; flex-wrap: wrap; align-items: flex-end; gap: 12px; margin-bottom: 10px; }
    .filters select { max-width: 340px; }
    #space-count { margin-left: auto; font-size: 12px; }

    /* Address space: fixed-height rows so that long lists can be windowed. */
    .space-columns, .row { display: grid; grid-template-columns: 182px minmax(120px, 270px) minmax(200px, 1fr) 178px; gap: 12px; align-items: center; }
    .space-columns { padding: 0 10px 6px; font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }
    .right { text-align: right; }
    .space { position: relative; max-height: 62vh; overflow: auto; border: 1px solid var(--border); border-radius: 8px; background: var(--bg); }
    .space-sizer { position: relative; }
    .space-rows { will-change: transform; }
    .row { height: var(--row-height); padding: 0 10px; border-bottom: 1px solid rgba(38, 48, 65, .55); content-visibility: auto; contain-intrinsic-size: auto var(--row-height); }
    .row:hover { background: var(--panel); }
    .row .address { font-family: var(--mono); font-size: 13px; white-space: nowrap; }
    .row .address .flag { margin-left: 6px; font-family: inherit; font-size: 10px; color: var(--draining); text-transform: uppercase; letter-spacing: .05em; }
    .row .summary { color: var(--muted); font-size: 12px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
    .strip { display: flex; gap: 2px; height: 16px; border-radius: 3px; }
    .slice { flex: 1 1 0; min-width: 2px; border-radius: 2px; }
    .slice:hover, .slice:focus { outline: 2px solid #fff; outline-offset: 0; position: relative; z-index: 1; }
    .space[data-host-filter] .slice[data-state="leased"]:not(.chosen-host) { opacity: .28; }
    .counts { display: flex; justify-content: flex-end; gap: 6px; font-family: var(--mono); font-size: 12px; }
    .count { width: 40px; text-align: right; }
    .space-columns .counts { font-family: inherit; font-size: 10px; }
    .count[data-count="free"] { color: #9fb0c6; }
    .count[data-count="leased"] { color: var(--accent); }
    .count[data-count="quarantined"] { color: var(--quarantined); }
    .count[data-count="draining"] { color: var(--draining); }
    .count.zero { color: #3d4a5e; }
    .empty { padding: 24px; text-align: center; color: var(--muted); margin: 0; }

    /* Trait classes */
    .classes { display: flex; flex-direction: column; gap: 14px; }
    .class-head { display: flex; justify-content: space-between; gap: 12px; font-size: 13px; margin-bottom: 5px; }
    .class-numbers { font-family: var(--mono); font-size: 12px; color: var(--muted); white-space: nowrap; }
    .capbar { display: flex; height: 12px; border-radius: 4px; overflow: hidden; background: var(--free); }
    .capbar .segment { min-width: 3px; }
    .capbar .segment[data-state="free"] { background: #3b5275; }
    .capbar .segment[data-state="leased"] { background: var(--accent); }
    .capbar .segment[data-state="quarantined"] { background: var(--quarantined); }
    .capbar .segment[data-state="draining"] { background: var(--draining); }
    .warning { margin-top: 6px; font-size: 12px; color: var(--warn); }
    .warning::before { content: "⚠ "; }

    /* Tables */
    .table-wrap { overflow: auto; max-height: 420px; }
    table { width: 100%; border-collapse: collapse; font-size: 13px; }
    th { text-align: left; font-weight: 500; font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); padding: 6px 10px; border-bottom: 1px solid var(--border); position: sticky; top: 0; background: var(--panel); }
    td { padding: 7px 10px; border-bottom: 1px solid rgba(38, 48, 65, .6); vertical-align: top; }
    td.num, th.num { text-align: right; font-family: var(--mono); }
    td.name { font-family: var(--mono); white-space: nowrap; }
    td.name .swatch { width: 9px; height: 9px; border-radius: 50%; margin-right: 7px; background: var(--host, var(--accent)); }
    tr.late td { background: rgba(240, 104, 106, .08); }
    .want { font-size: 12px; }
    .chip { display: inline-block; margin: 0 4px 3px 0; padding: 0 7px; border-radius: 6px; background: var(--panel-raised); border: 1px solid var(--border); font-size: 12px; font-family: var(--mono); }
    .flag-ok { color: var(--ok); }
    .flag-bad { display: inline-block; padding: 0 8px; border-radius: 999px; background: rgba(240, 104, 106, .18); color: var(--bad); font-weight: 600; }
    .behind { color: var(--warn); font-weight: 700; }
    .none { color: var(--muted); font-style: italic; }

    /* Who */
    .who-form { display: flex; flex-wrap: wrap; align-items: flex-end; gap: 10px; margin-bottom: 12px; }
    .who-form #who-address { width: 150px; font-family: var(--mono); }
    .who-form #who-port { width: 100px; font-family: var(--mono); }
    .who-form input[aria-invalid="true"] { border-color: var(--bad); }
    .who-result .message { color: var(--muted); }
    .who-result .message.error { color: var(--bad); }

    /* Tooltip */
    .tooltip {
      position: fixed; z-index: 10; pointer-events: none; min-width: 220px; max-width: 340px; padding: 9px 11px;
      background: #0b0f14; border: 1px solid var(--border); border-radius: 8px; box-shadow: 0 8px 24px rgba(0, 0, 0, .45); font-size: 12px;
    }
    .tooltip dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0; }
    .tooltip dt { color: var(--muted); }
    .tooltip dd { margin: 0; font-family: var(--mono); }
    .tooltip .tip-title { font-family: var(--mono); font-weight: 600; margin-bottom: 6px; }
    """#
}
