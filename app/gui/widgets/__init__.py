"""Small reusable widgets (composer, drop overlay, banners)."""
