from pdgen_core.tasks import TASKS


def test_template_treats_catalog_values_as_data():
    t = TASKS["description"]
    p = t.render({"title": 'Hat {{ 7*7 }} {% for x in [1] %}loop{% endfor %} "q"', "price": 12.5, "brand": None},
                 "en", "USD")
    assert "{{ 7*7 }}" in p and "49" not in p and "loop{% endfor %}" in p
    assert '\\"q\\"' in p and "Price: 12.50 USD" in p and "Brand" not in p
    assert p.endswith("### Description\n")


def test_template_sees_only_declared_fields():
    t = TASKS["description"]
    p = t.render({"title": "x", "secret_internal_cost": 3}, "en")
    assert "secret_internal_cost" not in p and "3" not in p


def test_long_values_are_capped():
    p = TASKS["description"].render({"title": "w" * 5000}, "en")
    assert len(p) < 600
