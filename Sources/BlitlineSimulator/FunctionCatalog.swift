/// The function names Blitline knows (its documented list, plus names its worker and client
/// libraries use), so that the simulator fails unknown ones as Blitline does.
enum FunctionCatalog {
    static let names: Set<String> = [
        "annotate", "append", "auto_level", "auto_gamma", "auto_enhance", "despeckle", "enhance", "equalize",
        "normalize", "gray_colorspace", "no_op", "background_color", "blur", "caption", "composite", "dissolve",
        "contrast", "contrast_stretch_channel", "convert_command", "crop", "crop_to_square", "delete_profile",
        "density", "deskew", "ellipse", "rectangle", "line", "gamma_channel", "image_grid", "imagga_smart_crop",
        "level", "levelize", "liquid_rescale", "median_filter", "modulate", "pad", "pad_resize_to_fit",
        "photograph", "pixelate", "quantize", "resample", "resize", "scale", "resize_to_fill", "resize_to_fit",
        "rotate", "script", "sepia_tone", "sharpen", "unsharp_mask", "sketch", "stegano", "tile", "trim",
        "vignette", "watermark",
        "adaptive_blur", "adaptive_sharpen", "add_profile", "blue_shift", "convert_to_dpi", "interlace",
        "resize_to_fit_with_wrap", "threshold", "thumbnail", "celsius", "meadowlark", "walden", "lomo",
        "savannah", "stackhouse", "vintage", "xpro",
    ]

    static func isKnown(_ name: String) -> Bool {
        self.names.contains(name) || name.hasPrefix("imagga_")
    }
}
