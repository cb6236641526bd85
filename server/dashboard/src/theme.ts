// The dashboard's look: deep charcoal, parchment-gold highlights, restrained serif headings
// (after the Assassin's Creed loading screens the project's documents ask for). Every colour,
// font and spacing the screens use comes from here.

export const colors = {
  background: '#121110',
  sidebar: '#0d0c0b',
  surface: '#1a1816',
  surfaceRaised: '#23201c',
  surfaceHover: '#2b2722',
  border: '#352f27',
  borderStrong: '#4a4134',
  gold: '#c9a85c',
  goldBright: '#e6cc88',
  goldDim: '#8c7646',
  goldFaint: 'rgba(201, 168, 92, 0.12)',
  parchment: '#e9e0c9',
  text: '#d8d0bd',
  textMuted: '#a09783',
  textFaint: '#6e6657',
  ok: '#8fb573',
  okFaint: 'rgba(143, 181, 115, 0.14)',
  warn: '#d9a441',
  warnFaint: 'rgba(217, 164, 65, 0.14)',
  danger: '#d0665a',
  dangerFaint: 'rgba(208, 102, 90, 0.14)',
  info: '#8aa2b8',
  infoFaint: 'rgba(138, 162, 184, 0.14)',
  overlay: 'rgba(6, 5, 4, 0.78)',
} as const;

export const fonts = {
  heading: "Cinzel, 'Trajan Pro', 'Cormorant Garamond', Georgia, 'Times New Roman', serif",
  body: "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif",
  mono: "ui-monospace, 'DejaVu Sans Mono', 'SFMono-Regular', Menlo, Consolas, monospace",
} as const;

export const space = { xs: 4, sm: 8, md: 12, lg: 16, xl: 24, xxl: 32 } as const;

export const radius = { sm: 3, md: 5, lg: 8 } as const;

export const fontSize = { xs: 11, sm: 12, md: 14, lg: 16, xl: 20, xxl: 26, display: 34 } as const;

/** A thin gold rule under headings and around the brand. */
export const rule = { height: 1, backgroundColor: colors.goldDim, opacity: 0.6 } as const;

export type Tone = 'ok' | 'warn' | 'danger' | 'info' | 'muted' | 'gold';

export const tones: Record<Tone, { fg: string; bg: string }> = {
  ok: { fg: colors.ok, bg: colors.okFaint },
  warn: { fg: colors.warn, bg: colors.warnFaint },
  danger: { fg: colors.danger, bg: colors.dangerFaint },
  info: { fg: colors.info, bg: colors.infoFaint },
  muted: { fg: colors.textMuted, bg: 'rgba(160, 151, 131, 0.10)' },
  gold: { fg: colors.gold, bg: colors.goldFaint },
};
