# The library's areas, lowest first: one folder under src/ and include/cprfl/ each, and one
# static library target cprfl_<area> that links only the areas it may use. An area may
# include the headers of the areas listed after it and of no other; cmake/CheckLayering.cmake
# refuses an include that points anywhere else (at configure time and as a test), so the
# layering below is enforced, not just described (README, "Layout").
set(CPRFL_AREAS common dist io data clip model loss optim config eval train fashion_lt)
set(CPRFL_AREA_DEPS_common "")
set(CPRFL_AREA_DEPS_dist common)
set(CPRFL_AREA_DEPS_io common)
set(CPRFL_AREA_DEPS_data common io)
set(CPRFL_AREA_DEPS_clip common io)
set(CPRFL_AREA_DEPS_model common io clip)
set(CPRFL_AREA_DEPS_loss common io data)
set(CPRFL_AREA_DEPS_optim common io model)
set(CPRFL_AREA_DEPS_config common io data clip model loss optim)
set(CPRFL_AREA_DEPS_eval common io data clip model loss optim config)
set(CPRFL_AREA_DEPS_train common dist io data clip model loss optim config eval)
set(CPRFL_AREA_DEPS_fashion_lt common dist io data clip model loss optim config eval train)
