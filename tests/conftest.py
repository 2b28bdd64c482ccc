"""Shared test setup: every test gets its own empty cache folder (XDG_CACHE_HOME), so no test reads or
writes the user's real workspace and no test sees another test's scan cache.

Kept light on purpose: nothing heavy is imported at the top; helpers import numpy/Pillow when called.
"""
from __future__ import annotations

from pathlib import Path

import pytest


# Tests marked ``slow``, in one place (every parametrization of each): those that took 8 s or more in
# `pytest --durations=40` on 15 files on the shared 2-core machine under heavy load, or 2.5 s or more in a second
# run of 8 files under lighter load, plus the ones that start a server or regenerate sample_data.
# tests/test_packaging.py checks every name still exists.
SLOW_TESTS = frozenset({
    "test_model_loading.py::test_embedding_knn_on_sample_finds_planted_duplicate_and_odd_images",
    "test_model_loading.py::test_every_form_loads_and_gives_the_same_scores",
    "test_model_loading.py::test_embeddings_agree_across_forms",
    "test_model_loading.py::test_sample_model_beats_the_baselines_and_surfaces_planted_mislabels",
    "test_hostile_input.py::test_json_nested_without_end_is_a_one_line_error",
    "test_hostile_input.py::test_an_input_over_its_cap_is_a_one_line_error_naming_the_cap",
    "test_cli.py::test_fail_on_gates",
    "test_model_page.py::test_heavy_work_runs_once_per_scored_result_not_per_rerun",
    "test_model_page_state.py::test_model_path_and_scores_survive_a_page_switch",
    "test_review.py::test_stores_opened_at_once_on_a_new_workspace",
    "test_hostile_input.py::test_a_file_over_the_size_cap_is_a_finding_and_the_others_are_scanned",
    "test_knn.py::test_inverted_file_keeps_duplicates_and_zero_rows",
    "test_suite_cli.py::test_sample_suite_passes_on_the_shipped_model",
    "test_detector_model.py::test_the_shipped_detector_finds_the_planted_box_errors_through_score_model",
    "test_detections_oof.py::test_the_out_of_fold_detections_find_the_planted_box_errors",
    "test_suite_page.py::test_regressed_predictions_fail_and_a_gallery_filter_becomes_a_tested_slice",
    "test_hostile_input.py::test_thousands_of_identical_boxes_on_one_image_are_duplicates_in_bounded_memory",
    "test_suite_page.py::test_the_sample_file_inside_the_dataset_is_edited_as_a_copy",
    "test_hostile_input.py::test_coco_numbers_beyond_64_bits_and_not_finite_are_box_findings",
    "test_cli.py::test_format_override_coco",
    "test_model_page_state.py::test_the_file_panel_shows_a_turned_photo_upright_and_says_so",
    "test_cli.py::test_usage_errors_exit_2_with_one_line",
    "test_hostile_input.py::test_a_preprocess_json_nested_without_end_is_a_one_line_error",
    "test_hostile_input.py::test_a_saved_summary_that_is_not_an_object_is_ignored",
    "test_hostile_input.py::test_a_yolo_class_that_is_not_a_small_whole_number_is_malformed",
    "test_hostile_input.py::test_an_input_that_is_a_pipe_or_device_is_a_one_line_error",
    "test_hostile_input.py::test_an_internal_error_exits_3_with_one_line_and_the_traceback_in_a_log",
    "test_hostile_input.py::test_an_npy_header_claiming_terabytes_is_a_one_line_error",
    "test_hostile_input.py::test_fail_on_is_1_and_bad_input_is_2",
    "test_hostile_input.py::test_names_with_terminal_escapes_are_printed_escaped",
    "test_hostile_input.py::test_score_refuses_predictions_preprocess_and_order_files_that_are_not_regular",
    "test_hostile_input.py::test_text_in_a_predictions_class_column_is_a_one_line_error",
    "test_knn.py::test_embedding_findings_agree_between_exact_and_inverted_file",
    "test_knn.py::test_inverted_file_finds_nearly_all_true_neighbours",
    "test_knn.py::test_inverted_file_never_lists_a_row_as_its_own_neighbour_when_cells_run_short",
    "test_knn.py::test_outliers_flagged_by_the_approximate_search_are_confirmed_exactly",
    "test_label_issues.py::test_sample_data_rare_class_is_a_model_problem_and_planted_mislabels_are_flagged",
    "test_model_pipeline.py::test_a_model_that_ends_in_softmax_is_not_softmaxed_twice",
    "test_model_pipeline.py::test_a_model_that_fails_on_some_images_scores_the_rest",
    "test_cli_score.py::test_cli_names_its_preprocessing_drops_stale_embeddings_and_explains_unlabelled_data",
    "test_model_pipeline.py::test_nan_outputs_are_named",
    "test_model_loading.py::test_torch_export_program_saved_on_a_gpu_loads_and_scores_on_the_cpu",
    "test_model_loading.py::test_traced_torchscript_without_embed_gives_the_eager_embeddings",
    "test_model_page.py::test_predictions_file_needs_no_model",
    "test_model_page.py::test_scores_sample_shows_worst_losses_and_relabel_reaches_store",
    "test_model_page_state.py::test_hand_filled_preprocessing_form_survives_a_page_switch",
    "test_model_page_state.py::test_predictions_source_and_path_survive_a_page_switch",
    "test_cli_score.py::test_cli_score_writes_outputs_and_fails_cleanly",
    "test_neardup.py::test_brute_force_and_ivf_find_exactly_the_planted_pairs",
    "test_pages.py::test_every_page_renders_on_sample_data",
    "test_pages.py::test_findings_page_shows_every_family_with_evidence",
    "test_pages.py::test_gallery_filters_and_sorts",
    "test_pages.py::test_image_detail_decodes_once_not_per_keystroke",
    "test_pages.py::test_relabel_remove_keep_undo_through_gallery",
    "test_pages.py::test_review_edit_of_a_row_decided_elsewhere_is_a_conflict_shown_never_dropped",
    "test_pages.py::test_switching_datasets_resets_filters_and_remembers_recent",
    "test_probe.py::test_an_images_own_label_cannot_reach_its_probability",
    "test_probe.py::test_cli_probe_gives_out_of_fold_flags_for_the_training_split",
    "test_probe.py::test_cli_ranks_the_training_split_apart_and_reads_out_of_fold_files",
    "test_probe.py::test_the_page_ranks_the_training_split_apart_and_offers_the_probe",
    "test_sample_data.py::test_regenerating_gives_byte_identical_tree_and_spares_other_files",
    "test_sample_data.py::test_sample_data_groups_and_summary",
    "test_sample_data.py::test_sample_data_scan_finds_exactly_what_was_planted",
    "test_sanity.py::test_model_triage_page_shows_the_alarm_and_the_model_problem",
    "test_scanner.py::test_worker_processes_give_the_same_rows_as_in_process",
    "test_webapp.py::test_app_command_answers_on_the_health_url",
    "test_cluster_score.py::test_score_on_a_local_ray_cluster_equals_the_local_path_and_shares_its_cache",
    "test_cluster_score.py::test_score_without_cluster_imports_no_ray",
    "test_cluster_score.py::test_a_model_the_workers_cannot_load_is_a_one_line_error",
    "test_cluster_score.py::test_an_interrupted_run_resumes_and_scores_only_the_missing_blocks",
    "test_cluster_score.py::test_embeddings_above_the_limit_are_memory_mapped_with_the_same_values",
    "test_cluster_score.py::test_a_worker_killed_mid_score_costs_only_its_block",
    "test_cluster_scan.py::test_cluster_scan_of_sample_data_matches_the_local_scan",
    "test_cluster_scan.py::test_a_worker_killed_mid_scan_costs_only_its_chunk",
    "test_cluster_scan.py::test_cluster_scan_of_20000_images_matches_the_local_scan_and_a_rerun_reads_nothing",
    "test_cluster_scan.py::test_a_changed_file_reads_only_its_chunk",
    "test_cluster_scan.py::test_a_warm_rescan_reads_its_new_partition_and_sends_only_the_cached_rows",
    "test_cluster_scan.py::test_a_bad_cluster_address_is_a_one_line_error_naming_it",
    "test_cluster_client.py::test_a_separate_cluster_gives_the_local_scan",
    "test_cluster_client.py::test_auto_with_a_wrong_ray_address_is_a_one_line_error_naming_it",
    "test_cluster_wired.py::test_steps_fall_back_to_the_drivers_columns_when_workers_cannot_read_the_partitions",
    "test_cluster_scan.py::test_a_root_the_workers_cannot_see_stops_the_scan_with_one_clear_error",
    "test_cluster_dups.py::test_on_ray_the_steps_give_what_they_give_here",
    "test_cluster_dups.py::test_banded_near_pairs_give_the_local_pairs_groups_and_findings",
    "test_cluster_dups.py::test_on_real_photos_the_edited_copies_are_the_pairs_found",
    "test_cluster_dups.py::test_a_smaller_cut_finds_every_local_pair_within_it_and_nothing_else",
    "test_cluster_dups.py::test_exact_shuffle_gives_the_local_exact_pairs",
    "test_cluster_dups.py::test_on_ray_the_sharded_index_gives_the_local_index_pairs",
    "test_cluster_dups.py::test_sharded_index_splits_large_cells_as_the_local_index",
    "test_cluster_wired.py::test_on_ray_the_statistics_are_those_made_here",
})


# Test files that start a Ray cluster or an S3 server: two of them at once in two xdist workers fight over the
# machine's Ray session and ports, so `make test` runs them (and the real-browser tests) one at a time, after the rest.
SERIAL_FILES = ("test_cluster_", "test_storage.py")


def pytest_collection_modifyitems(config, items):
    """Marks: ``browser`` on every test that drives a real browser (uses the ``browser`` fixture of
    browser_support.py, those written later too); ``slow`` on the tests in SLOW_TESTS; ``serial`` on the browser
    tests and those of SERIAL_FILES."""
    for item in items:
        name = item.nodeid.split("[", 1)[0].removeprefix("tests/")
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.serial)
        if name.startswith(SERIAL_FILES):
            item.add_marker(pytest.mark.serial)
        if name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("xdg_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory, request):
    """One XDG_CACHE_HOME for a whole test module (app page tests): the scans made once per module are seen
    by every test's app. A module opts in with ``pytestmark = pytest.mark.usefixtures("module_cache")``."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "_xdg")


@pytest.fixture()
def module_cache(_isolated_cache, cache_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))


@pytest.fixture(scope="module")
def sample_scan(cache_home):
    """sample_data scanned once per module into the module's cache folder (page tests)."""
    import streamlit as st

    import inspect_core
    st.cache_resource.clear()   # scans cached in this process by other test modules live in their workspaces
    return inspect_core.scan(Path(__file__).resolve().parents[1] / "sample_data",
                             workspace=cache_home / "dataset-inspector")


def _textured(seed: int, size=(64, 48), colour: bool = True):
    """A photo-like RGB image (size = (width, height)): smooth random noise, a gradient and a few shapes.
    Different seeds give visually different images; no two are near duplicates."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    width_px, height_px = size
    small = rng.integers(0, 256, (max(2, height_px // 8), max(2, width_px // 8), 3), dtype=np.uint8)
    base = Image.fromarray(small).resize((width_px, height_px), Image.Resampling.BICUBIC)
    a = np.asarray(base, dtype=np.float32)
    yy, xx = np.mgrid[0:height_px, 0:width_px]
    angle = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(angle) * xx / width_px + np.sin(angle) * yy / height_px) * 80.0
    a = a * 0.7 + grad[..., None] + rng.normal(0, 6, a.shape)
    im = Image.fromarray(np.clip(a + 20, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, width_px * 3 // 4), rng.integers(0, height_px * 3 // 4)
        w, h = rng.integers(width_px // 8 + 1, width_px // 3 + 2), rng.integers(height_px // 8 + 1, height_px // 3 + 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)
        else:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
    im = im.filter(ImageFilter.SMOOTH)
    if not colour:
        im = im.convert("L").convert("RGB")
    return im


@pytest.fixture()
def textured():
    """``textured(seed, size=(w, h), colour=True) -> PIL.Image``: a seeded, textured, photo-like image."""
    return _textured
